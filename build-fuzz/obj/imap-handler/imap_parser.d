build-fuzz/obj/imap-handler/imap_parser.o: imap-handler/imap_parser.c \
  imap-handler/imap_parser.h common/str.h common/stream.h

imap-handler/imap_parser.h:

common/str.h:

common/stream.h:
