/*
 * fuzz_mutf7: modified UTF-7 mailbox names (imap_mutf7) both ways.  What
 * decodes must encode back to the same text, and what encodes must decode
 * back to the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_mutf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct str a = STR_INIT, b = STR_INIT;
	if (mutf7_to_utf8((const char *)data, size, &a) == 0) {
		if (utf8_to_mutf7(str_c(&a), a.len, &b) != 0 ||
		    b.len != size || (size > 0 && memcmp(b.data, data, size) != 0))
			abort();
	}
	str_clear(&a);
	str_clear(&b);
	if (utf8_to_mutf7((const char *)data, size, &a) == 0) {
		if (mutf7_to_utf8(str_c(&a), a.len, &b) != 0 ||
		    b.len != size || (size > 0 && memcmp(b.data, data, size) != 0))
			abort();
	}
	str_free(&a);
	str_free(&b);
	return 0;
}
