/*
 * shop.c
 *		Module entry point: load-time setup and the extension's settings.
 */
#include "shop.h"

#include <limits.h>

#include "utils/guc.h"

PG_MODULE_MAGIC;

#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(x) EmitWarningsOnPlaceholders(x)
#endif

/* How long a PENDING order holds its stock, in seconds. */
int			shop_reservation_ttl = 20 * 60;

void		_PG_init(void);

/*
 * Define the shop.* settings.  reservation_ttl is superuser-settable only:
 * an API role must not be able to hold stock longer than the shop allows.
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
	MarkGUCPrefixReserved("shop");
}
