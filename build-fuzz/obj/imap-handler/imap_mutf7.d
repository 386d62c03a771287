build-fuzz/obj/imap-handler/imap_mutf7.o: imap-handler/imap_mutf7.c \
  imap-handler/imap_mutf7.h common/str.h

imap-handler/imap_mutf7.h:

common/str.h:
