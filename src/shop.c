/*
 * shop.c
 *		Module entry point: load-time setup and the extension's settings.
 */
#include "shop.h"
#include "webhook.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

/*
 * PostgreSQL 15 is what shop is built and tested with (README,
 * "Installation").  Older servers lack APIs it uses (pg_hmac_error,
 * MarkGUCPrefixReserved); refuse them here with a clear message rather than
 * with a compiler error deep in some file.
 */
#if PG_VERSION_NUM < 150000
#error "shop requires PostgreSQL 15 or later"
#endif

/* How long a PENDING order holds its stock, in seconds. */
int			shop_reservation_ttl = 20 * 60;

/* Largest webhook body shop_handle_webhook() reads, in bytes. */
int			shop_webhook_max_body = 1024 * 1024;

/* Available stock below which stock.low is sent (0: never). */
int			shop_low_stock_threshold = 0;

void		_PG_init(void);

/*
 * Define the shop.* settings, superuser-settable only: an API role must not
 * be able to hold stock longer than the shop allows, nor make the webhook
 * function read bodies of any size.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("shop.reservation_ttl",
							"How long a PENDING order holds its reserved stock.",
							"An order not paid within this time is released by "
							"shop_expire_pending() or by a buyer who needs the stock.",
							&shop_reservation_ttl,
							20 * 60, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("shop.webhook_max_body_bytes",
							"Largest payment webhook body that is read.",
							"A longer body is refused with SH014 before its "
							"signature is computed or it is parsed.",
							&shop_webhook_max_body,
							1024 * 1024, 1024, MaxAllocSize / 2,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("shop.low_stock_threshold",
							"Available stock below which a SKU's reservation sends stock.low.",
							"0 sends none; shop.sku.low_stock_threshold overrides it per SKU.",
							&shop_low_stock_threshold,
							0, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("shop.provider_timeout",
							"Timeout of a synchronous call to a payment provider.",
							"Past it the call fails with SH020 and nothing is stored.",
							&shop_provider_timeout_ms,
							10000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	outbox_worker_init();
	if (process_shared_preload_libraries_in_progress)
		events_gate_init();
	MarkGUCPrefixReserved("shop");
}
