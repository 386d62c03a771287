/*
 * strlist: a growable array of owned C strings (recipient lists, alias
 * targets, config lists).
 */
#ifndef SOCKMAIL_STRLIST_H
#define SOCKMAIL_STRLIST_H

#include <stdbool.h>
#include <stddef.h>

struct strlist {
	char **items;
	size_t n;
	size_t cap;
};

#define STRLIST_INIT { NULL, 0, 0 }

void strlist_add(struct strlist *l, const char *s);
void strlist_add_n(struct strlist *l, const char *s, size_t len);
/* Add unless an equal string is there already; returns true if added. */
bool strlist_add_unique(struct strlist *l, const char *s);
bool strlist_contains(const struct strlist *l, const char *s);
void strlist_clear(struct strlist *l);
void strlist_free(struct strlist *l);

#endif
