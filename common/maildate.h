/*
 * maildate: the RFC 5322 date-time ("Fri, 27 Nov 2026 09:05:56 +0000"), in
 * local time, for Received:, Date: and the DSNs' date fields.
 */
#ifndef SOCKMAIL_MAILDATE_H
#define SOCKMAIL_MAILDATE_H

#include <time.h>

#include "str.h"

/* Append t as an RFC 5322 date-time to *out. */
void mail_date(time_t t, struct str *out);

#endif
