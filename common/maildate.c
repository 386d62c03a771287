/*
 * maildate: RFC 5322 date-times.  strftime's %a and %b are English only in
 * the C locale, which is all sockmail's programs ever run in (none calls
 * setlocale).
 */
#include "maildate.h"

void mail_date(time_t t, struct str *out)
{
	char buf[64];
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S %z", &tm);
	str_append(out, buf);
}
