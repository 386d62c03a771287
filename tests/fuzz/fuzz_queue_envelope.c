/*
 * fuzz_queue_envelope: the queue's envelope record reader
 * (queue_envelope_parse in common/queue.c), given what a queue.tdb record
 * value could hold, and the state readers built on it
 * (queue_envelope_done, queue_envelope_next).  Invariants checked:
 *   - the parser never reads outside the record (ASan: an exact-size
 *     copy) and a refused record leaves the envelope zeroed, nothing to
 *     free (LeakSanitizer);
 *   - an accepted envelope is within the bounds the format promises: a
 *     valid id, a sender, 1 to 10000 recipients each with a non-empty
 *     address, known states, texts free of control octets except what
 *     the escapes allow, at most 1000 (error: 512) octets;
 *   - the parser accepts exactly what the formatter writes: formatting an
 *     accepted envelope gives back the record byte for byte;
 *   - done/next agree with the recipients' states.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_text(const char *s, size_t max)
{
	CHECK(s != NULL && strlen(s) <= max);
}

static void check_envelope(const struct queue_envelope *env)
{
	CHECK(queue_id_valid(env->id));
	check_text(env->sender, 1000);
	if (env->auth_user != NULL)
		check_text(env->auth_user, 1000);
	CHECK(env->arrival >= 0);
	CHECK(env->n_rcpts >= 1 && env->n_rcpts <= 10000 &&
	      env->rcpts != NULL);
	bool done = true;
	time_t next = 0;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		check_text(r->address, 1000);
		CHECK(r->address[0] != '\0');
		if (r->orcpt != NULL)
			check_text(r->orcpt, 1000);
		if (r->last_error != NULL)
			check_text(r->last_error, QUEUE_ERROR_MAX);
		CHECK(r->state == RCPT_PENDING || r->state == RCPT_DELIVERED ||
		      r->state == RCPT_FAILED);
		CHECK(r->next_try >= 0);
		if (r->state == RCPT_PENDING ||
		    (r->state == RCPT_FAILED && !r->dsn_sent))
			done = false;
		if (r->state == RCPT_PENDING && (next == 0 || r->next_try < next))
			next = r->next_try;
	}
	CHECK(queue_envelope_done(env) == done);
	CHECK(queue_envelope_next(env) == next);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *rec = malloc(size ? size : 1);
	CHECK(rec != NULL);
	memcpy(rec, data, size);

	struct queue_envelope env;
	memset(&env, 0xa5, sizeof env);	/* the parser must set it all */
	if (queue_envelope_parse(rec, size, &env) != 0) {
		static const struct queue_envelope zero;
		CHECK(memcmp(&env, &zero, sizeof env) == 0);
		free(rec);
		return 0;
	}
	check_envelope(&env);

	struct str out = STR_INIT;
	queue_envelope_format(&env, &out);
	CHECK(out.len == size && memcmp(out.data, data, size) == 0);
	str_free(&out);
	queue_envelope_free(&env);
	free(rec);
	return 0;
}
