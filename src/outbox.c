/*
 * outbox.c
 *		The outbox's SQL API: send given-up rows again.
 *
 * A dead row starts over (attempts 0, age from now) when a person has
 * fixed what killed it.  Rows of removed endpoints stay dead: nothing would
 * claim them.
 */
#include "shop.h"

#include "catalog/pg_type.h"

PG_FUNCTION_INFO_V1(shop_redeliver);
PG_FUNCTION_INFO_V1(shop_redeliver_dead);

static SPIPlanPtr plan_redeliver;
static SPIPlanPtr plan_row_exists;
static SPIPlanPtr plan_redeliver_dead;
static SPIPlanPtr plan_endpoint_exists;

/* The columns a dead row gets back when queued again. */
#define REQUEUE_SET \
	"SET state = 'queued', attempts = 0, next_attempt_at = now(), queued_at = now()," \
	"    last_status = NULL, last_error = NULL, updated_at = now()"

/*
 * shop_redeliver(outbox_id bigint) returns boolean
 */
Datum
shop_redeliver(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	int64		outbox_id = shop_int64_arg(fcinfo, 0, "outbox_id");
	Datum		values[1];
	bool		queued;

	SPI_connect();
	values[0] = Int64GetDatum(outbox_id);
	queued = shop_exec(shop_plan(&plan_redeliver,
								 "UPDATE shop.outbox o " REQUEUE_SET
								 "  FROM shop.event_endpoint e"
								 " WHERE o.id = $1 AND o.state = 'dead'"
								 "   AND e.id = o.endpoint_id AND e.removed_at IS NULL",
								 1, argtypes),
					   values, NULL, false, 0) == 1;
	if (queued)
		outbox_wake_at_commit();
	else if (shop_exec(shop_plan(&plan_row_exists,
								 "SELECT FROM shop.outbox WHERE id = $1",
								 1, argtypes),
					   values, NULL, true, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("outbox row %lld does not exist", (long long) outbox_id)));
	SPI_finish();
	PG_RETURN_BOOL(queued);
}

/*
 * shop_redeliver_dead(endpoint_id bigint DEFAULT NULL) returns integer
 */
Datum
shop_redeliver_dead(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];
	char		nulls[1] = {PG_ARGISNULL(0) ? 'n' : ' '};
	uint64		n;

	SPI_connect();
	values[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	if (!PG_ARGISNULL(0) &&
		shop_exec(shop_plan(&plan_endpoint_exists,
							"SELECT FROM shop.event_endpoint WHERE id = $1",
							1, argtypes),
				  values, nulls, true, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("event endpoint %lld does not exist",
						(long long) PG_GETARG_INT64(0))));
	n = shop_exec(shop_plan(&plan_redeliver_dead,
							"UPDATE shop.outbox o " REQUEUE_SET
							"  FROM shop.event_endpoint e"
							" WHERE o.state = 'dead' AND e.id = o.endpoint_id"
							"   AND e.removed_at IS NULL"
							"   AND ($1 IS NULL OR o.endpoint_id = $1)",
							1, argtypes),
				  values, nulls, false, 0);
	if (n > 0)
		outbox_wake_at_commit();
	SPI_finish();
	PG_RETURN_INT32((int32) n);
}
