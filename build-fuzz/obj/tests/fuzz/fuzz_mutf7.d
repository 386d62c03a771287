build-fuzz/obj/tests/fuzz/fuzz_mutf7.o: tests/fuzz/fuzz_mutf7.c \
  imap-handler/imap_mutf7.h common/str.h

imap-handler/imap_mutf7.h:

common/str.h:
