/*
 * str: a growable, always NUL-terminated byte string (Dovecot's string_t,
 * Postfix's VSTRING).  Every piece of sockmail that builds text of unknown
 * length uses it instead of a fixed buffer.  Allocation failure aborts: a
 * per-connection handler has nothing better to do than die and let the
 * client retry.
 */
#ifndef SOCKMAIL_STR_H
#define SOCKMAIL_STR_H

#include <stdarg.h>
#include <stddef.h>

struct str {
	char *data;	/* NUL-terminated; NULL until the first append */
	size_t len;
	size_t cap;
};

#define STR_INIT { NULL, 0, 0 }

void str_reserve(struct str *s, size_t extra);
void str_append(struct str *s, const char *text);
void str_append_n(struct str *s, const void *data, size_t len);
void str_append_c(struct str *s, char c);
void str_printf(struct str *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void str_vprintf(struct str *s, const char *fmt, va_list ap);
void str_truncate(struct str *s, size_t len);
void str_clear(struct str *s);
/* The text, "" for a string never written to. */
const char *str_c(const struct str *s);
void str_free(struct str *s);

/* Memory helpers that abort instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
