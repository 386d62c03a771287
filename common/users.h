/*
 * users: the users.tdb database in state_dir, the one source of domains,
 * users and aliases.  Handlers open it read-only when they first need it;
 * only sockmailctl writes, inside tdb transactions, so a reader sees either
 * the old or the new state.
 *
 * Records (keys and values are NUL-free; keys are lower-cased):
 *   "D:<domain>"          -> "1"                      a local domain
 *   "U:<local>@<domain>"  -> "<crypt hash>"            a mailbox user
 *   "A:<local>@<domain>"  -> "t1\nt2\n..."             alias with targets
 *   "A:@<domain>"         -> "t1\n..."                 catch-all for a domain
 * Targets are full addresses, local or remote.  A user's Maildir is
 * <mail_dir>/<domain>/<local>/.
 */
#ifndef SOCKMAIL_USERS_H
#define SOCKMAIL_USERS_H

#include <stdbool.h>

#include "str.h"
#include "strlist.h"

#define USERDB_FILE "users.tdb"
/* Alias expansion depth limit (loops and chains). */
#define USERDB_MAX_DEPTH 10
/* Subaddress delimiter: user+tag@domain delivers to user@domain. */
#define USERDB_SUBADDR_DELIM '+'

struct userdb;

/* Open <state_dir>/users.tdb.  A reader fails if the file does not exist;
 * a writer creates it (mode 0640, owned like state_dir). */
struct userdb *userdb_open(const char *state_dir, bool writable,
			   struct str *err);
void userdb_close(struct userdb *db);
/* A handler's lazy open: opens read-only into *db the first time, logs why
 * it could not; true when *db is usable. */
bool userdb_open_once(struct userdb **db, const char *state_dir);

/* Lookups.  Addresses and domains are lower-cased here, so callers may pass
 * them as the client wrote them.  Return 1 found, 0 not found, -1 error. */
int userdb_domain_exists(struct userdb *db, const char *domain);
int userdb_user_hash(struct userdb *db, const char *address, struct str *hash);
int userdb_alias_targets(struct userdb *db, const char *address,
			 struct strlist *targets);

enum userdb_resolve {
	RESOLVE_OK,		/* mailboxes and remote filled */
	RESOLVE_NO_DOMAIN,	/* not a local domain: relay */
	RESOLVE_NO_USER,	/* local domain, nobody by that name */
	RESOLVE_LOOP,		/* aliases nest deeper than USERDB_MAX_DEPTH */
	RESOLVE_ERROR,		/* database trouble: temporary */
};

/*
 * Resolve a recipient to the mailboxes that get a copy and the remote
 * addresses it forwards to, appended (without duplicates) to the lists.
 * Order of lookups for local@domain: alias local@domain, user local@domain,
 * then with a "+tag" removed from local the same two, then the catch-all
 * alias @domain.  Alias targets resolve recursively.  Mailboxes come out as
 * canonical "local@domain" (lower case) of existing users.
 */
enum userdb_resolve userdb_resolve(struct userdb *db, const char *local,
				   const char *domain, struct strlist *mailboxes,
				   struct strlist *remote);

/* The same without catch-all aliases: the names that really exist.  A
 * sender check uses it, or a catch-all owner could send as anyone at the
 * domain. */
enum userdb_resolve userdb_resolve_explicit(struct userdb *db,
					    const char *local,
					    const char *domain,
					    struct strlist *mailboxes,
					    struct strlist *remote);

/* Writers (sockmailctl).  Each change is one tdb transaction; on error
 * nothing changed and *err says why (unknown domain, duplicate, ...). */
int userdb_domain_add(struct userdb *db, const char *domain, struct str *err);
/* Refuses while users or aliases of the domain exist. */
int userdb_domain_del(struct userdb *db, const char *domain, struct str *err);
int userdb_user_add(struct userdb *db, const char *address, const char *hash,
		    struct str *err);
/* The checks of userdb_user_add (address, local domain, not a user yet)
 * without writing, so sockmailctl can create the Maildir first; *canon gets
 * the canonical "local@domain".  0 ok, -1 with *err. */
int userdb_user_check_new(struct userdb *db, const char *address,
			  struct str *canon, struct str *err);
int userdb_user_set_hash(struct userdb *db, const char *address,
			 const char *hash, struct str *err);
int userdb_user_del(struct userdb *db, const char *address, struct str *err);
/* Adds targets to an alias (creating it); "@domain" is a catch-all. */
int userdb_alias_add(struct userdb *db, const char *address,
		     const struct strlist *targets, struct str *err);
/* Removes the alias, or only the given targets when targets->n > 0. */
int userdb_alias_del(struct userdb *db, const char *address,
		     const struct strlist *targets, struct str *err);

/* Listings, sorted. */
int userdb_list_domains(struct userdb *db, struct strlist *out);
int userdb_list_users(struct userdb *db, const char *domain_or_null,
		      struct strlist *out);
/* "address: t1, t2" lines. */
int userdb_list_aliases(struct userdb *db, const char *domain_or_null,
			struct strlist *out);

#endif
