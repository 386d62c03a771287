/*
 * strlist: growable arrays of owned strings.
 */
#include "strlist.h"

#include <stdlib.h>
#include <string.h>

#include "str.h"

void strlist_add_n(struct strlist *l, const char *s, size_t len)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->items = xrealloc(l->items, l->cap * sizeof *l->items);
	}
	l->items[l->n++] = xstrndup(s, len);
}

void strlist_add(struct strlist *l, const char *s)
{
	strlist_add_n(l, s, strlen(s));
}

bool strlist_contains(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i], s) == 0)
			return true;
	return false;
}

bool strlist_add_unique(struct strlist *l, const char *s)
{
	if (strlist_contains(l, s))
		return false;
	strlist_add(l, s);
	return true;
}

void strlist_clear(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i]);
	l->n = 0;
}

void strlist_free(struct strlist *l)
{
	strlist_clear(l);
	free(l->items);
	l->items = NULL;
	l->cap = 0;
}
