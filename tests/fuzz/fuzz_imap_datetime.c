/*
 * fuzz_imap_datetime: the date parsers and formatter of IMAP: date-time
 * (imap_parse_datetime: APPEND, INTERNALDATE), date (imap_parse_date:
 * SEARCH), imap_format_datetime, and the lenient RFC 5322 Date: parser
 * of SEARCH (imap_search_parse_mail_date), run in one of three local
 * zones (UTC, +09:30 and -03:30 with summer time) picked by input size.
 *
 * Invariants: a parsed date-time formats to a quoted 26-character
 * date-time that parses back to the same instant (when its year has four
 * digits); a parsed date is a day's midnight and equals the date-time
 * "<date> 00:00:00 +0000"; any instant from the input formats to a
 * well-formed date-time that parses back to itself (years 1000-9999); a
 * parsed Date: has a zone within +-99:59, and written out again in RFC
 * 5322 form (with and without day of week, with a comment) parses back to
 * the same instant and zone.  The Date: parser gets an exactly sized
 * buffer, not a C string, so ASan sees any read past its end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap_parser.h"
#include "imap_search.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_imap_datetime: invariant broken: %s\n",
			what);
		abort();
	}
}

static const char *const zones[] = {
	"UTC0",
	"ACST-9:30ACDT,M10.1.0,M4.1.0/3",
	"NST3:30NDT,M3.2.0,M11.1.0",
};

static const char months[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* The formatted date-time "\"dd-Mon-yyyy hh:mm:ss +zzzz\"": well formed
 * and parsing back to when, if its year has four digits. */
static void check_format(int64_t when)
{
	struct str out = STR_INIT;
	imap_format_datetime(when, &out);
	check(out.len >= 2 && out.data[0] == '"' &&
	      out.data[out.len - 1] == '"', "format not quoted");
	char inner[64];
	size_t n = out.len - 2;
	check(n < sizeof inner, "format too long");
	memcpy(inner, out.data + 1, n);
	inner[n] = '\0';
	/* Always a four-digit year (instants outside 1000-9999 local time
	 * are clamped: found by this target); the round trip holds for
	 * what was not clamped. */
	check(n == 26 && inner[7] >= '1' && inner[7] <= '9',
	      "date-year not four digits");
	bool clamped = strcmp(inner, "01-Jan-1000 00:00:00 +0000") == 0 ||
		       strcmp(inner, "31-Dec-9999 23:59:59 +0000") == 0;
	if (!clamped) {
		int64_t back;
		if (imap_parse_datetime(inner, &back) != 0)
			fprintf(stderr, "refused: %s\n", inner);
		check(imap_parse_datetime(inner, &back) == 0,
		      "formatted date-time refused");
		check(back == when, "date-time round trip");
	}
	str_free(&out);
}

static void check_mail_date(const char *s, size_t len)
{
	int64_t when;
	int zone;
	if (imap_search_parse_mail_date(s, len, &when, &zone) != 0)
		return;
	/* RFC 5322 3.3: -9959 through +9959 */
	check(zone >= -(99 * 60 + 59) && zone <= 99 * 60 + 59,
	      "zone out of range");

	/* Write it out again in its own zone. */
	time_t local = (time_t)(when + (int64_t)zone * 60);
	struct tm tm;
	if (gmtime_r(&local, &tm) == NULL)
		return;
	int64_t year = (int64_t)tm.tm_year + 1900;
	if (year < 1000 || year > 9999)
		return;	/* 3-digit years mean 1900+y: not writable */
	static const char wday[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
	};
	int az = zone < 0 ? -zone : zone;
	char text[3][96];
	snprintf(text[0], sizeof text[0],
		 "%s, %d %s %04d %02d:%02d:%02d %c%02d%02d", wday[tm.tm_wday],
		 tm.tm_mday, months[tm.tm_mon], (int)year, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, zone < 0 ? '-' : '+', az / 60, az % 60);
	snprintf(text[1], sizeof text[1],
		 "%02d %s %04d %02d:%02d:%02d %c%02d%02d (comment)",
		 tm.tm_mday, months[tm.tm_mon], (int)year, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, zone < 0 ? '-' : '+', az / 60, az % 60);
	snprintf(text[2], sizeof text[2],
		 "%s %s %2d %02d:%02d:%02d %04d %c%02d%02d", wday[tm.tm_wday],
		 months[tm.tm_mon], tm.tm_mday, tm.tm_hour, tm.tm_min,
		 tm.tm_sec, (int)year, zone < 0 ? '-' : '+', az / 60, az % 60);
	for (int i = 0; i < 3; i++) {
		int64_t w2;
		int z2;
		size_t n = strlen(text[i]);
		char *exact = malloc(n);
		memcpy(exact, text[i], n);
		int rc = imap_search_parse_mail_date(exact, n, &w2, &z2);
		free(exact);
		if (rc != 0 || w2 != when || z2 != zone)
			fprintf(stderr, "round trip of \"%s\"\n", text[i]);
		check(rc == 0, "written-out Date: refused");
		check(w2 == when && z2 == zone, "Date: round trip");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int zone_set = -1;
	int z = (int)(size % 3);
	if (z != zone_set) {
		setenv("TZ", zones[z], 1);
		tzset();
		zone_set = z;
	}

	/* the C-string parsers see the input up to a NUL */
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';

	int64_t when;
	if (imap_parse_datetime(s, &when) == 0)
		check_format(when);

	int64_t day;
	if (imap_parse_date(s, &day) == 0) {
		check(day % 86400 == 0, "date is not a midnight");
		char dt[64];
		/* date-day is 1 or 2 digits, date-day-fixed 2 */
		snprintf(dt, sizeof dt, "%s%s 00:00:00 +0000",
			 s[1] == '-' ? "0" : "", s);
		int64_t at;
		check(imap_parse_datetime(dt, &at) == 0 && at == day,
		      "date and date-time disagree");
	}

	/* any instant: the input's first 8 octets */
	if (size >= 8) {
		int64_t t;
		memcpy(&t, data, sizeof t);
		/* keep localtime_r's year in an int */
		if (t > -((int64_t)1 << 55) && t < ((int64_t)1 << 55))
			check_format(t);
	}

	char *exact = malloc(size > 0 ? size : 1);
	memcpy(exact, data, size);
	check_mail_date(exact, size);
	free(exact);
	free(s);
	return 0;
}
