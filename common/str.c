/*
 * str: growable strings and the aborting allocators everything else uses.
 */
#include "str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die_nomem(void)
{
	static const char msg[] = "sockmail: out of memory\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		die_nomem();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		die_nomem();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		die_nomem();
	return p;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void str_reserve(struct str *s, size_t extra)
{
	if (extra >= (size_t)-1 / 2 - s->len)
		die_nomem();
	size_t need = s->len + extra + 1;
	if (need <= s->cap)
		return;
	size_t cap = s->cap ? s->cap : 64;
	while (cap < need)
		cap *= 2;
	s->data = xrealloc(s->data, cap);
	s->cap = cap;
	/* always a valid C string, even before anything is appended */
	s->data[s->len] = '\0';
}

void str_append_n(struct str *s, const void *data, size_t len)
{
	str_reserve(s, len);
	if (len)
		memcpy(s->data + s->len, data, len);
	s->len += len;
	s->data[s->len] = '\0';
}

void str_append(struct str *s, const char *text)
{
	str_append_n(s, text, strlen(text));
}

void str_append_c(struct str *s, char c)
{
	str_append_n(s, &c, 1);
}

void str_vprintf(struct str *s, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	char small[256];
	int n = vsnprintf(small, sizeof small, fmt, ap);
	if (n < 0) {
		va_end(ap2);
		return;
	}
	if ((size_t)n < sizeof small) {
		str_append_n(s, small, (size_t)n);
	} else {
		str_reserve(s, (size_t)n);
		vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap2);
		s->len += (size_t)n;
	}
	va_end(ap2);
}

void str_printf(struct str *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	str_vprintf(s, fmt, ap);
	va_end(ap);
}

void str_truncate(struct str *s, size_t len)
{
	if (len < s->len) {
		s->len = len;
		s->data[len] = '\0';
	}
}

void str_clear(struct str *s)
{
	str_truncate(s, 0);
}

const char *str_c(const struct str *s)
{
	return s->data ? s->data : "";
}

void str_free(struct str *s)
{
	free(s->data);
	s->data = NULL;
	s->len = s->cap = 0;
}
