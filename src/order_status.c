/*
 * order_status.c
 *		The order vocabulary: statuses, the reasons an order ended where it
 *		is, and the rules that hang on them.
 *
 * These names are stored in shop.orders.status and status_reason, whose
 * CHECK constraints (src/sql/10_tables.sql) list exactly the same words.
 * Every C decision about an order's state goes through the enums here, so a
 * status or reason is never compared as a string anywhere else.
 *
 * A reason is not free text: it decides what a late payment may do
 * (webhook.c).  Stock released because time ran out or a payment attempt
 * failed may be sold again to the same buyer when the money arrives after
 * all; an order cancelled on purpose never is.  So callers of
 * shop_release() choose from a fixed set, and "expired" is set only by the
 * expiry code: a caller who could pass it would turn a deliberate cancel
 * into one a late payment re-sells.
 */
#include "shop.h"

#include "utils/builtins.h"

static const char *const status_names[] = {
	[ORDER_CREATED] = "CREATED",
	[ORDER_PENDING] = "PENDING",
	[ORDER_PAID] = "PAID",
	[ORDER_CANCELLED] = "CANCELLED",
	[ORDER_FAILED] = "FAILED",
};

static const char *const reason_names[] = {
	[REASON_NONE] = NULL,
	[REASON_CANCELLED] = "cancelled",
	[REASON_CUSTOMER_CANCELLED] = "customer_cancelled",
	[REASON_SHOP_CANCELLED] = "shop_cancelled",
	[REASON_PAYMENT_FAILED] = "payment_failed",
	[REASON_EXPIRED] = "expired",
	[REASON_PAID_AFTER_RELEASE] = "paid_after_release",
};

/* The reasons a caller of shop_release() may give, as listed in errors. */
#define RELEASE_REASONS "cancelled, customer_cancelled, shop_cancelled, payment_failed"

const char *
order_status_name(OrderStatus status)
{
	return status_names[status];
}

/*
 * A stored status.  The table's CHECK constraint admits only these words.
 */
OrderStatus
order_status_from_name(const char *name)
{
	int			i;

	for (i = 0; i < (int) lengthof(status_names); i++)
		if (strcmp(status_names[i], name) == 0)
			return (OrderStatus) i;
	elog(ERROR, "shop: unknown order status \"%s\"", name);
	return ORDER_CREATED;		/* keep compiler quiet */
}

/*
 * The stored word for a reason; NULL for REASON_NONE.
 */
const char *
order_reason_name(OrderReason reason)
{
	return reason_names[reason];
}

/*
 * A stored reason (NULL reads as REASON_NONE).  A 0.1 database that has
 * not run ALTER EXTENSION shop UPDATE yet may hold free text: anything
 * unknown counts as a deliberate cancel, the one reason that is never
 * acted on automatically.
 */
OrderReason
order_reason_from_name(const char *name)
{
	int			i;

	if (name == NULL)
		return REASON_NONE;
	for (i = 1; i < (int) lengthof(reason_names); i++)
		if (strcmp(reason_names[i], name) == 0)
			return (OrderReason) i;
	return REASON_CANCELLED;
}

/*
 * The reason argument of shop_release(): one of RELEASE_REASONS, else
 * 22023 and nothing changes.
 */
OrderReason
order_release_reason_arg(text *arg)
{
	char	   *name = text_to_cstring(arg);
	OrderReason reason = REASON_NONE;
	int			i;

	for (i = 1; i < (int) lengthof(reason_names); i++)
		if (strcmp(reason_names[i], name) == 0)
			reason = (OrderReason) i;
	if (reason == REASON_EXPIRED || reason == REASON_PAID_AFTER_RELEASE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("release reason \"%s\" is set by the shop itself", name),
				 errdetail("Only the expiry sweep marks orders expired; a late payment may re-sell an expired order but never a cancelled one."),
				 errhint("Use one of: %s.", RELEASE_REASONS)));
	if (reason == REASON_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown release reason \"%s\"", name),
				 errhint("Use one of: %s.", RELEASE_REASONS)));
	return reason;
}

/*
 * The status a release for reason ends in: FAILED when the payment failed,
 * else CANCELLED.
 */
OrderStatus
order_release_status(OrderReason reason)
{
	return reason == REASON_PAYMENT_FAILED ? ORDER_FAILED : ORDER_CANCELLED;
}

/*
 * Whether the order is released (CANCELLED or FAILED): its stock was given
 * back and it can never be confirmed by an ordinary confirm.
 */
bool
order_status_released(OrderStatus status)
{
	return status == ORDER_CANCELLED || status == ORDER_FAILED;
}

/*
 * Whether a released order may be sold after all when its payment arrives
 * late: only when it was released by time or by a failed attempt, never
 * when someone cancelled it on purpose.
 */
bool
order_reason_resellable(OrderReason reason)
{
	return reason == REASON_EXPIRED || reason == REASON_PAYMENT_FAILED;
}
