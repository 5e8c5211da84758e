/*
 * cron.c
 *		Register the expiry sweep with pg_cron.
 *
 * pg_cron is optional: it runs jobs from one database per cluster
 * (cron.database_name), and shop may live in another.  So it is looked up
 * at call time, never required by the control file, and every way it can be
 * missing gets an error whose hint says what to run.  The job is named, so
 * registering twice updates the one job instead of adding a second.
 */
#include "shop.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(shop_schedule_expiry);

#define SHOP_CRON_JOB		"shop-expire-pending"
#define SHOP_CRON_COMMAND	"SELECT shop.shop_expire_pending()"

static SPIPlanPtr plan_has_cron;
static SPIPlanPtr plan_schedule;

/*
 * Raise the error for a database without pg_cron, with the fitting hint.
 */
static void
report_cron_missing(const char *schedule)
{
	const char *cron_db = GetConfigOption("cron.database_name", true, false);
	const char *this_db = get_database_name(MyDatabaseId);

	if (cron_db == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_CRON_UNAVAILABLE),
				 errmsg("pg_cron is not loaded"),
				 errhint("Add pg_cron to shared_preload_libraries, restart the server, "
						 "and run CREATE EXTENSION pg_cron.")));
	if (strcmp(cron_db, this_db) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_CRON_UNAVAILABLE),
				 errmsg("pg_cron runs jobs from database \"%s\", not \"%s\"",
						cron_db, this_db),
				 errhint("In database \"%s\" run: SELECT cron.schedule_in_database("
						 "%s, %s, %s, %s);",
						 cron_db, quote_literal_cstr(SHOP_CRON_JOB),
						 quote_literal_cstr(schedule),
						 quote_literal_cstr(SHOP_CRON_COMMAND),
						 quote_literal_cstr(this_db))));
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_CRON_UNAVAILABLE),
			 errmsg("pg_cron is not installed in database \"%s\"", this_db),
			 errhint("Run CREATE EXTENSION pg_cron; then call this function again.")));
}

/*
 * shop_schedule_expiry(schedule text) returns bigint (the pg_cron job id)
 */
Datum
shop_schedule_expiry(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TEXTOID};
	text	   *schedule = shop_text_arg(fcinfo, 0, "schedule", true);
	Datum		values[3];
	int64		job_id;

	SPI_connect();
	if (shop_exec(shop_plan(&plan_has_cron,
							"SELECT 1 FROM pg_catalog.pg_extension"
							" WHERE extname = 'pg_cron'",
							0, NULL),
				  NULL, NULL, true, 0) == 0)
		report_cron_missing(text_to_cstring(schedule));

	/* prepared only once pg_cron is known to exist */
	values[0] = CStringGetTextDatum(SHOP_CRON_JOB);
	values[1] = PointerGetDatum(schedule);
	values[2] = CStringGetTextDatum(SHOP_CRON_COMMAND);
	shop_exec(shop_plan(&plan_schedule,
						"SELECT cron.schedule($1, $2, $3)",
						3, argtypes),
			  values, NULL, false, 0);
	job_id = shop_get_int64(0, 1, NULL);
	SPI_finish();
	PG_RETURN_INT64(job_id);
}
