/*
 * spi_util.c
 *		Kept SPI plans, argument checks and result conversion.
 *
 * Every statement the extension runs is prepared once per backend, kept with
 * SPI_keepplan, and executed with parameters: no SQL is ever built from
 * input.  The helpers here keep that discipline short at each call site.
 */
#include "shop.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

/*
 * Return the plan in *slot, preparing and keeping it on first use.
 */
SPIPlanPtr
shop_plan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes)
{
	SPIPlanPtr	plan;

	if (*slot != NULL)
		return *slot;

	plan = SPI_prepare(sql, nargs, (Oid *) argtypes);
	if (plan == NULL)
		elog(ERROR, "shop: SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "shop: SPI_keepplan failed");
	*slot = plan;
	return plan;
}

/*
 * shop_plan() for a statement whose best plan does not depend on its
 * parameters' values: always the generic plan, planned once.  Without this
 * the plan cache keeps planning custom plans on every call when it finds
 * the generic one costlier (as with "= ANY ($n)" on arrays), which for the
 * event statements (run on every order transition, mostly to find that no
 * endpoint subscribes) cost more than executing them.
 */
SPIPlanPtr
shop_plan_generic(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes)
{
	SPIPlanPtr	plan;

	if (*slot != NULL)
		return *slot;

	plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "shop: SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "shop: SPI_keepplan failed");
	*slot = plan;
	return plan;
}

/*
 * Execute a kept plan and return the number of rows it processed.
 */
uint64
shop_exec(SPIPlanPtr plan, Datum *values, const char *nulls,
		  bool read_only, long count)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, count);

	if (rc < 0)
		elog(ERROR, "shop: SPI_execute_plan failed: %s",
			 SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * Column col (1-based) of result row as int64; any integer type works.
 */
int64
shop_get_int64(uint64 row, int col, bool *isnull)
{
	bool		null;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row],
								  SPI_tuptable->tupdesc, col, &null);
	Oid			type = SPI_gettypeid(SPI_tuptable->tupdesc, col);

	if (isnull)
		*isnull = null;
	if (null)
		return 0;
	switch (type)
	{
		case INT8OID:
			return DatumGetInt64(d);
		case INT4OID:
			return DatumGetInt32(d);
		case INT2OID:
			return DatumGetInt16(d);
		default:
			elog(ERROR, "shop: column %d is not an integer", col);
	}
	return 0;					/* keep compiler quiet */
}

/*
 * Column col of result row as bool (NULL reads as false).
 */
bool
shop_get_bool(uint64 row, int col)
{
	bool		null;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row],
								  SPI_tuptable->tupdesc, col, &null);

	return !null && DatumGetBool(d);
}

/*
 * Column col of result row as a C string in the SPI context (NULL if null).
 */
char *
shop_get_text(uint64 row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * Build the function's composite result from SPI result row, in the
 * caller's memory context (outer), so it survives SPI_finish.  The query's
 * first columns must match the result type's, in order; any after them
 * are ignored.
 */
Datum
shop_row_datum(FunctionCallInfo fcinfo, MemoryContext outer, uint64 row)
{
	MemoryContext old = MemoryContextSwitchTo(outer);
	TupleDesc	tupdesc;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	tuple;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "shop: function must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	/* the query may return more columns after the result's (flags) */
	if (tupdesc->natts > SPI_tuptable->tupdesc->natts)
		elog(ERROR, "shop: result has %d columns, query returned %d",
			 tupdesc->natts, SPI_tuptable->tupdesc->natts);

	values = palloc(sizeof(Datum) * SPI_tuptable->tupdesc->natts);
	nulls = palloc(sizeof(bool) * SPI_tuptable->tupdesc->natts);
	heap_deform_tuple(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
					  values, nulls);
	tuple = heap_form_tuple(tupdesc, values, nulls);
	MemoryContextSwitchTo(old);
	return HeapTupleGetDatum(tuple);
}

/*
 * Return every row of the last SPI result as the set-returning function's
 * result (materialize mode).  Call before SPI_finish.
 */
void
shop_rows_to_srf(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	Datum	   *values;
	bool	   *nulls;
	uint64		i;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "shop: function must return a composite type");
	tupdesc = CreateTupleDescCopy(tupdesc);
	store = tuplestore_begin_heap(true, false, work_mem);
	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	for (i = 0; i < SPI_processed; i++)
	{
		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
						  values, nulls);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(old);
}

/*
 * A bigint[] datum holding items, for "= ANY($n)" parameters.
 */
Datum
shop_int64_array(const int64 *items, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Raise the standard error for a missing required argument.
 */
static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

/*
 * A text argument: NULL allowed only when not required; never empty and
 * never longer than SHOP_MAX_TEXT_ARG bytes.
 */
text *
shop_text_arg(FunctionCallInfo fcinfo, int argno, const char *name,
			  bool required)
{
	text	   *t;
	int			len;

	if (!required && PG_ARGISNULL(argno))
		return NULL;
	require_arg(fcinfo, argno, name);
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0 || len > SHOP_MAX_TEXT_ARG)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between 1 and %d bytes long", name,
						SHOP_MAX_TEXT_ARG)));
	return t;
}

/*
 * A required bigint argument.
 */
int64
shop_int64_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	require_arg(fcinfo, argno, name);
	return PG_GETARG_INT64(argno);
}

/*
 * A required integer argument.
 */
int32
shop_int32_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	require_arg(fcinfo, argno, name);
	return PG_GETARG_INT32(argno);
}

/*
 * In a PG_CATCH block around an internal subtransaction: save the error,
 * roll the subtransaction back (dropping its row locks), restore the
 * caller's memory context and resource owner, and return the error for the
 * caller to raise again or translate.
 */
ErrorData *
shop_subxact_abort(MemoryContext cxt, ResourceOwner owner)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/*
 * Run step(arg) in an internal subtransaction and keep what it did only
 * when it returns true; otherwise roll it back, which also gives back every
 * row lock it took.  An error rolls it back too and is raised again.
 * Returns step's result.  step reads its own SPI results before returning
 * (they belong to the subtransaction).
 */
bool
shop_keep_or_undo(bool (*step) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool keep = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		keep = step(arg);
		if (keep)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ReThrowError(shop_subxact_abort(cxt, owner));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return keep;
}

/*
 * Rows (sku_id, qty) of the last SPI result as order lines.
 */
OrderLine *
shop_result_lines(uint64 n)
{
	OrderLine  *lines = palloc(sizeof(OrderLine) * Max(n, 1));
	uint64		i;

	for (i = 0; i < n; i++)
	{
		lines[i].sku_id = shop_get_int64(i, 1, NULL);
		lines[i].qty = (int32) shop_get_int64(i, 2, NULL);
	}
	return lines;
}

/*
 * Execute a kept plan that returns no rows, leaving the previous result
 * (SPI_tuptable, SPI_processed) as it was, so that a caller about to
 * return that result can run a statement first.  Returns the number of
 * rows the statement processed.
 */
uint64
shop_exec_keep_result(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	SPITupleTable *tuptable = SPI_tuptable;
	uint64		processed = SPI_processed;
	uint64		n = shop_exec(plan, values, nulls, false, 0);

	SPI_tuptable = tuptable;
	SPI_processed = processed;
	return n;
}
