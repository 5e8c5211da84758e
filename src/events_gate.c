/*
 * events_gate.c
 *		Skip an emit statement that cannot find an endpoint.
 *
 * Every state change runs an emit statement (events.c) that looks for the
 * endpoints subscribed to its event type and writes nothing when there is
 * none.  A shop with no endpoint subscribed would pay that statement on
 * every change: 2 of the 16 statements of a checkout.  So a backend
 * remembers, per event type, that the statement found no endpoint, and
 * skips it until some endpoint may have changed.
 *
 * "May have changed" is told by two counters in shared memory, moved by
 * every transaction that writes shop.event_endpoint (its statement trigger
 * calls shop_event_endpoint_changed()):
 *	- changing: raised before that transaction's commit becomes visible
 *	  (XACT_EVENT_PRE_COMMIT), lowered after it (XACT_EVENT_COMMIT/ABORT);
 *	- generation: raised after the commit, before changing is lowered.
 * A backend reads changing, then generation, before the emit statement
 * takes its snapshot, and remembers "none at generation G" only when
 * changing was 0 and the statement found no endpoint.  It skips while
 * changing is 0 and generation is still G.  Why that is exact: a change
 * that committed before a skip's reading either is still lowering
 * changing (no skip) or has raised generation (no skip); a change that
 * was not visible to the remembering statement's snapshot committed after
 * the reading, so it raised generation after it (or had changing raised
 * at the reading: nothing remembered).  Barriers keep the reads in order.
 *
 * Only READ COMMITTED statements remember: a REPEATABLE READ snapshot may
 * predate a change the reading already counts.  A transaction that changed
 * endpoints itself never skips (its change is not counted before commit).
 * A prepared transaction that changed endpoints leaves changing raised
 * (its commit runs in another backend): nothing is skipped until restart.
 * Without shop in shared_preload_libraries there is no shared memory and
 * the statement always runs.  The counters are per cluster, not per
 * database: a change in one database makes the others look again, which
 * costs one statement and is never wrong.
 */
#include "shop.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/lwlock.h"

PG_FUNCTION_INFO_V1(shop_event_endpoint_changed);

typedef struct EventsGateShared
{
	pg_atomic_uint32 changing;
	pg_atomic_uint64 generation;
} EventsGateShared;

static EventsGateShared *gate = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* The event types whose emit statement may be skipped (events.c). */
static const char *const gate_types[] = {
	"order.created", "order.paid", "order.cancelled", "order.failed",
	"order.expired", "order.needs_review", "stock.low", "order.shipped",
	"order.delivered", "order.refunded", "order.refund_failed"
};
#define NUM_GATE_TYPES lengthof(gate_types)

/* Per type: the generation at which the statement found no endpoint; 0 none. */
static uint64 none_at[NUM_GATE_TYPES];

/* This transaction wrote shop.event_endpoint; changing was raised for it. */
static bool changed_in_xact = false;
static bool counted_in_xact = false;
static bool callback_registered = false;

static void
gate_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EventsGateShared)));
}

static void
gate_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	gate = ShmemInitStruct("shop events gate", sizeof(EventsGateShared), &found);
	if (!found)
	{
		pg_atomic_init_u32(&gate->changing, 0);
		/* 0 means "nothing remembered" in none_at */
		pg_atomic_init_u64(&gate->generation, 1);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Ask for the shared counters (called by _PG_init while shop is being
 * preloaded).
 */
void
events_gate_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = gate_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = gate_shmem_startup;
}

static void
gate_xact_callback(XactEvent event, void *arg)
{
	if (!changed_in_xact)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* before the change is visible to anyone */
			if (gate != NULL && !counted_in_xact)
			{
				pg_atomic_fetch_add_u32(&gate->changing, 1);
				counted_in_xact = true;
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (counted_in_xact)
			{
				/* full barriers: generation moves before changing drops */
				pg_atomic_fetch_add_u64(&gate->generation, 1);
				pg_atomic_fetch_sub_u32(&gate->changing, 1);
			}
			changed_in_xact = counted_in_xact = false;
			break;
		case XACT_EVENT_PREPARE:
			/* changing stays raised: see the header */
			changed_in_xact = counted_in_xact = false;
			break;
		default:
			break;
	}
}

/*
 * shop_event_endpoint_changed() returns trigger: the statement trigger of
 * shop.event_endpoint.  Notes that this transaction changes endpoints.
 */
Datum
shop_event_endpoint_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("shop_event_endpoint_changed() must be called as a trigger")));
	if (!callback_registered)
	{
		RegisterXactCallback(gate_xact_callback, NULL);
		callback_registered = true;
	}
	changed_in_xact = true;
	return PointerGetDatum(NULL);
}

static int
gate_type_index(const char *type)
{
	int			i;

	for (i = 0; i < (int) NUM_GATE_TYPES; i++)
		if (strcmp(gate_types[i], type) == 0)
			return i;
	return -1;
}

/*
 * Whether the emit statement for type may be skipped: it found no endpoint
 * at the current generation and no endpoint change is under way.  When it
 * must run, *generation is what to pass to events_gate_found_none() if it
 * finds no endpoint (0: do not remember).  Call before the statement.
 */
bool
events_gate_closed(const char *type, uint64 *generation)
{
	int			i = gate_type_index(type);
	uint32		changing;
	uint64		gen;

	*generation = 0;
	if (gate == NULL || i < 0 || changed_in_xact)
		return false;
	pg_memory_barrier();
	changing = pg_atomic_read_u32(&gate->changing);
	pg_read_barrier();
	gen = pg_atomic_read_u64(&gate->generation);
	if (changing != 0)
		return false;
	if (none_at[i] == gen)
		return true;
	if (!IsolationUsesXactSnapshot())
		*generation = gen;
	return false;
}

/*
 * The emit statement for type, run after events_gate_closed() gave
 * generation, found no endpoint.
 */
void
events_gate_found_none(const char *type, uint64 generation)
{
	int			i = gate_type_index(type);

	if (i >= 0 && generation != 0)
		none_at[i] = generation;
}
