/*
 * shop.h
 *		Declarations shared by the shop extension's C files.
 *
 * Each .c file in src/ has one concern; this header is the contract between
 * them: SQLSTATEs, the order-line type, and the helpers every API function
 * uses to run its kept SPI plans.
 */
#ifndef SHOP_H
#define SHOP_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/resowner.h"

/*
 * Shop-specific SQLSTATEs (class SH).  They are part of the API: clients
 * switch on them, the README lists them, never renumber one.
 */
#define ERRCODE_SHOP_INSUFFICIENT_STOCK		MAKE_SQLSTATE('S','H','0','0','1')
#define ERRCODE_SHOP_NOT_FOR_SALE			MAKE_SQLSTATE('S','H','0','0','2')
#define ERRCODE_SHOP_EMPTY_CART				MAKE_SQLSTATE('S','H','0','0','3')
#define ERRCODE_SHOP_WRONG_ORDER_STATE		MAKE_SQLSTATE('S','H','0','0','4')
#define ERRCODE_SHOP_MIXED_CURRENCY			MAKE_SQLSTATE('S','H','0','0','5')
#define ERRCODE_SHOP_STOCK_BELOW_RESERVED	MAKE_SQLSTATE('S','H','0','0','6')
#define ERRCODE_SHOP_CRON_UNAVAILABLE		MAKE_SQLSTATE('S','H','0','0','7')
/* SH010..SH015 are the webhook codes (webhook.h) */
/* SH040..SH049: refunds by lines (refund.c) */
#define ERRCODE_SHOP_REFUND_LINE_UNKNOWN	MAKE_SQLSTATE('S','H','0','4','0')
#define ERRCODE_SHOP_REFUND_QTY_EXCEEDED	MAKE_SQLSTATE('S','H','0','4','1')
#define ERRCODE_SHOP_REFUND_OVER_PAID		MAKE_SQLSTATE('S','H','0','4','2')
#define ERRCODE_SHOP_PAYMENT_MISMATCH		MAKE_SQLSTATE('S','H','0','1','5')
#define ERRCODE_SHOP_PAID_TWICE				MAKE_SQLSTATE('S','H','0','1','6')
/* free orders (order_state.c shop_confirm_free, provider_api.c, confirm.c) */
#define ERRCODE_SHOP_AMOUNT_DUE				MAKE_SQLSTATE('S','H','0','1','7')
#define ERRCODE_SHOP_NOTHING_TO_PAY			MAKE_SQLSTATE('S','H','0','1','8')
/* SH020..SH024 provider calls (webhook.h); SH025..SH030 coupons (SQL) */
/* shipping and tax: SH031..SH033 are raised in SQL (27_shipping_tax.sql) */
#define ERRCODE_SHOP_BAD_ADDRESS			MAKE_SQLSTATE('S','H','0','3','1')
#define ERRCODE_SHOP_SHIPPING_LOCKED		MAKE_SQLSTATE('S','H','0','3','4')
#define ERRCODE_SHOP_FULFILMENT_STATE		MAKE_SQLSTATE('S','H','0','3','5')
#define ERRCODE_SHOP_SHIPPED_OTHERWISE		MAKE_SQLSTATE('S','H','0','3','6')

/*
 * The columns of type shop.order_summary, in order: every query that
 * returns an order to a caller selects exactly these.
 */
#define SHOP_ORDER_SUMMARY	"id, status, amount, currency, expires_at"

/* Longest user_id, idempotency key or reason we accept. */
#define SHOP_MAX_TEXT_ARG	256

/* Most lines one order may have. */
#define SHOP_MAX_ORDER_LINES	1000

/* Most expired orders one inline reclaim releases. */
#define SHOP_RECLAIM_BATCH	100

/* GUCs (shop.c): shop.reservation_ttl in seconds, the webhook body limit */
extern int	shop_reservation_ttl;
extern int	shop_webhook_max_body;
extern int	shop_low_stock_threshold;

/* One order line: a SKU and how many units. */
typedef struct OrderLine
{
	int64		sku_id;
	int32		qty;
} OrderLine;

/* A change to one SKU's counters, produced when reservations settle. */
typedef struct SkuDelta
{
	int64		sku_id;
	int			bucket;			/* 0: the SKU row; else its shop.sku_bucket */
	int64		qty;
} SkuDelta;

/* The order vocabulary (order_status.c); names as in the CHECK constraints. */
typedef enum OrderStatus
{
	ORDER_CREATED,				/* only inside the creating transaction */
	ORDER_PENDING,				/* stock reserved, awaiting payment */
	ORDER_PAID,					/* stock consumed */
	ORDER_CANCELLED,			/* stock given back */
	ORDER_FAILED				/* stock given back: the payment failed */
} OrderStatus;

typedef enum OrderReason
{
	REASON_NONE,				/* status_reason NULL */
	REASON_CANCELLED,			/* released on purpose, by whom not said */
	REASON_CUSTOMER_CANCELLED,	/* released on purpose by the customer */
	REASON_SHOP_CANCELLED,		/* released on purpose by the shop */
	REASON_PAYMENT_FAILED,		/* the payment failed (status FAILED) */
	REASON_EXPIRED,				/* time ran out (expiry code only) */
	REASON_PAID_AFTER_RELEASE	/* PAID: a late payment re-reserved it */
} OrderReason;

extern const char *order_status_name(OrderStatus status);
extern OrderStatus order_status_from_name(const char *name);
extern const char *order_reason_name(OrderReason reason);
extern OrderReason order_reason_from_name(const char *name);
extern OrderReason order_release_reason_arg(text *arg);
extern OrderStatus order_release_status(OrderReason reason);
extern bool order_status_released(OrderStatus status);
extern bool order_reason_resellable(OrderReason reason);

/* An order row locked FOR UPDATE, with what the transitions decide on. */
typedef struct LockedOrder
{
	int64		id;
	OrderStatus status;
	OrderReason reason;
	int64		amount;
	char		currency[4];
	char	   *payment_id;		/* external_payment_id, NULL if none */
} LockedOrder;

/* spi_util.c: kept plans, arguments, results */
extern SPIPlanPtr shop_plan(SPIPlanPtr *slot, const char *sql,
							int nargs, const Oid *argtypes);
extern SPIPlanPtr shop_plan_generic(SPIPlanPtr *slot, const char *sql,
									int nargs, const Oid *argtypes);
extern uint64 shop_exec(SPIPlanPtr plan, Datum *values, const char *nulls,
						bool read_only, long count);
extern int64 shop_get_int64(uint64 row, int col, bool *isnull);
extern bool shop_get_bool(uint64 row, int col);
extern char *shop_get_text(uint64 row, int col);
extern Datum shop_row_datum(FunctionCallInfo fcinfo, MemoryContext outer,
							uint64 row);
extern void shop_rows_to_srf(FunctionCallInfo fcinfo);
extern Datum shop_int64_array(const int64 *items, int n);
extern text *shop_text_arg(FunctionCallInfo fcinfo, int argno,
						   const char *name, bool required);
extern int64 shop_int64_arg(FunctionCallInfo fcinfo, int argno, const char *name);
extern int32 shop_int32_arg(FunctionCallInfo fcinfo, int argno, const char *name);
extern uint64 shop_exec_keep_result(SPIPlanPtr plan, Datum *values,
								  const char *nulls);
extern ErrorData *shop_subxact_abort(MemoryContext cxt, ResourceOwner owner);
extern bool shop_keep_or_undo(bool (*step) (void *arg), void *arg);
extern OrderLine *shop_result_lines(uint64 n);

/* sku.c: a SKU's sale state */
extern char *sku_for_sale(int64 sku_id, int64 cart_id, int64 *available,
						  int32 *in_cart);
extern char *sku_for_sale_stock(int64 sku_id, int64 cart_id, int64 *available,
								int32 *in_cart, int *nbuckets, int64 *in_buckets);
extern int64 sku_expired_holdings(int64 sku_id);

/* cart.c: the user's open cart */
extern int64 cart_lock_open(text *user_id, bool create);

/* order_lines.c: parse and normalise order lines */
extern OrderLine *lines_from_jsonb(Datum items, int *nlines);
extern void lines_normalise(OrderLine *lines, int *nlines);

/* settle.c: consume or release the reservations of locked orders */
extern SkuDelta *settle_mark(const int64 *order_ids, int norders,
							 bool consume, int *ndeltas);
extern void settle_apply_one(int64 sku_id, int bucket, int64 qty, bool consume);
extern void settle_apply(const SkuDelta *deltas, int ndeltas, bool consume);

/* expiry.c: find and release expired orders */
extern int64 *expiry_lock_orders(const int64 *skus, int nskus,
								 int limit, int *norders);
extern SkuDelta *expiry_release_locked(const int64 *order_ids, int norders,
									   int *ndeltas);

/* order_state.c: lock an order and move it along */
extern bool order_lock(int64 order_id, LockedOrder *order);
extern bool order_payment_matches(const LockedOrder *order, bool has_amount,
								  int64 amount, const char *currency,
								  char **why);
extern void order_confirm_locked(int64 order_id, const char *payment_id,
								 OrderReason reason);
extern void order_release_locked(int64 order_id, OrderReason reason);
extern void order_settle(int64 order_id, bool consume);
extern void order_refuse_nothing_to_pay(int64 order_id, int64 amount);

/* hot.c: hot-SKU mode, a SKU's stock split into buckets */
extern bool hot_schema_ready(void);
extern int	hot_start_bucket(int nbuckets);
extern bool hot_sku_state(int64 sku_id, int *nbuckets, int64 *available,
						  int64 *in_buckets);
extern void hot_lock(int64 sku_id);
extern int	hot_rebalance(int64 sku_id, int64 need, int64 delta, int *nbuckets,
						  int64 *available);
extern void hot_stock_level(int64 sku_id);
extern int	hot_hint(int64 sku_id);
extern void hot_remember(int64 sku_id, int nbuckets);
extern void hot_forget(int64 sku_id);

/* reserve.c: reserve order lines, all or nothing */
extern void reserve_order_lines(int64 order_id, OrderLine *lines, int nlines,
								int64 *amount, char *currency);
extern int64 reserve_order_again(int64 order_id, OrderLine *lines, int nlines);

/* stock.c: refunded units back to stock, booked as an adjustment */
extern int64 stock_restock(int64 sku_id, int32 qty, const char *reason);

/* order_lines.c: a whole number member of a JSON object (present or not) */
extern bool json_member_int64(JsonbContainer *obj, const char *key,
							  const char *array, int index, int64 *result);

/* coupon.c: redeem, give back and take again coupon redemptions */
extern bool coupons_schema_ready(void);
extern int64 coupons_redeem(int64 order_id, text *user_id, text *code,
							const char *currency);
extern void coupons_release(const int64 *order_ids, int norders);
extern bool coupons_retake(int64 order_id);

/* shipping.c: shipping and tax of new orders */
extern bool shipping_args(FunctionCallInfo fcinfo, int argno, text **method,
						  Jsonb **ship_to);
extern Datum shipping_reprice(FunctionCallInfo fcinfo, MemoryContext outer,
							  int64 order_id, text *method, Jsonb *ship_to);

/* events.c: outgoing events, written with the change that causes them */
/*
 * A timestamptz as ISO 8601 in UTC ("2026-11-29T10:15:02.123456Z"), so the
 * body a receiver gets does not depend on the writing session's TimeZone.
 */
#define SHOP_UTC_TEXT(expr) \
	"pg_catalog.to_char((" expr ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

extern void events_emit_orders(const char *type, const int64 *order_ids,
							   int norders, Jsonb *extra);
extern void events_emit_stock_low(int64 sku_id, int64 threshold);
extern const char *events_release_type(OrderReason reason);
extern bool events_stock_crossed_low(int64 available_after, int32 qty,
									 bool has_own, int64 own_threshold,
									 int64 *threshold);
extern void outbox_wake_at_commit(void);
extern bool events_schema_ready(void);

/* events_gate.c */
extern void events_gate_init(void);
extern bool events_gate_closed(const char *type, uint64 *generation);
extern void events_gate_found_none(const char *type, uint64 generation);

/* outbox_worker.c: the delivery worker and its settings */
extern bool outbox_allow_http_loopback;
extern void outbox_worker_init(void);
extern void outbox_worker_wake(void);

/* endpoint.c: event endpoints and the outbound URL policy */
extern const char *endpoint_url_refusal(const char *url);

#endif							/* SHOP_H */
