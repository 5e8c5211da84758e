/*
 * order_lines.c
 *		Parse and normalise order lines.
 *
 * Reservations lock SKU rows, so every caller must present its lines in one
 * global order (ascending sku_id) to make deadlocks impossible, and with each
 * SKU once, so a stock check sees the whole quantity asked for (summing
 * duplicates before the check is what Medusa's bug #16502 misses).
 */
#include "shop.h"

#include "common/int.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

/*
 * Order lines by sku_id.
 */
static int
line_cmp(const void *a, const void *b)
{
	int64		x = ((const OrderLine *) a)->sku_id;
	int64		y = ((const OrderLine *) b)->sku_id;

	return (x > y) - (x < y);
}

/*
 * Sort lines by sku_id and merge lines of the same SKU, summing their qty.
 */
void
lines_normalise(OrderLine *lines, int *nlines)
{
	int			n = *nlines;
	int			out = 0;
	int			i;

	qsort(lines, n, sizeof(OrderLine), line_cmp);
	for (i = 0; i < n; i++)
	{
		if (out > 0 && lines[out - 1].sku_id == lines[i].sku_id)
		{
			if (pg_add_s32_overflow(lines[out - 1].qty, lines[i].qty,
									&lines[out - 1].qty))
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("total quantity of SKU %lld is out of range",
								(long long) lines[i].sku_id)));
			continue;
		}
		lines[out++] = lines[i];
	}
	*nlines = out;
}

/*
 * Whether num lies within the bigint range (before rounding).
 */
static bool
numeric_fits_int64(Numeric num)
{
	Datum		lo = DirectFunctionCall1(int8_numeric, Int64GetDatum(PG_INT64_MIN));
	Datum		hi = DirectFunctionCall1(int8_numeric, Int64GetDatum(PG_INT64_MAX));

	return DatumGetBool(DirectFunctionCall2(numeric_ge, NumericGetDatum(num), lo)) &&
		DatumGetBool(DirectFunctionCall2(numeric_le, NumericGetDatum(num), hi));
}

/*
 * Member key of a JSON object (element index of array) as a whole number:
 * false when the object has no such member, an error naming it when it is
 * not a whole number within the bigint range.
 */
bool
json_member_int64(JsonbContainer *obj, const char *key, const char *array,
				  int index, int64 *result)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
	Numeric		num;

	if (v == NULL || v->type == jbvNull)
		return false;
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s[%d].%s must be a number", array, index, key)));
	num = v->val.numeric;
	if (!numeric_fits_int64(num))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s[%d].%s is out of range", array, index, key)));
	*result = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(num)));
	/* numeric_int8 rounds; refuse 1.5 instead of silently buying 2 */
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(num),
										  DirectFunctionCall1(int8_numeric,
															  Int64GetDatum(*result)))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s[%d].%s must be a whole number", array, index, key)));
	return true;
}

/*
 * Member key of an items[] object as a whole number, or an error naming it.
 */
static int64
json_member_int(JsonbContainer *obj, const char *key, int index)
{
	int64		result;

	if (!json_member_int64(obj, key, "items", index, &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("items[%d].%s must be a number", index, key)));
	return result;
}

/*
 * Parse [{"sku_id": N, "qty": N}, ...] into normalised lines.
 */
OrderLine *
lines_from_jsonb(Datum items, int *nlines)
{
	Jsonb	   *jb = DatumGetJsonbP(items);
	OrderLine  *lines;
	int			n;
	int			i;

	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb) || JB_ROOT_COUNT(jb) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("items must be a non-empty JSON array"),
				 errhint("Pass items as [{\"sku_id\": 1, \"qty\": 2}, ...].")));
	n = JB_ROOT_COUNT(jb);
	if (n > SHOP_MAX_ORDER_LINES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an order may have at most %d lines", SHOP_MAX_ORDER_LINES)));

	lines = palloc(sizeof(OrderLine) * n);
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&jb->root, i);
		int64		qty;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("items[%d] must be an object with sku_id and qty", i)));
		lines[i].sku_id = json_member_int(elem->val.binary.data, "sku_id", i);
		qty = json_member_int(elem->val.binary.data, "qty", i);
		if (qty <= 0 || qty > PG_INT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("items[%d].qty must be a positive integer, not %lld",
							i, (long long) qty)));
		lines[i].qty = (int32) qty;
	}
	lines_normalise(lines, &n);
	*nlines = n;
	return lines;
}
