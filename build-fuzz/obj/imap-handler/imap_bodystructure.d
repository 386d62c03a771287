build-fuzz/obj/imap-handler/imap_bodystructure.o: \
  imap-handler/imap_bodystructure.c imap-handler/imap_fetch_build.h \
  common/mime.h common/str.h common/strlist.h imap-handler/imap_parser.h \
  common/stream.h

imap-handler/imap_fetch_build.h:

common/mime.h:

common/str.h:

common/strlist.h:

imap-handler/imap_parser.h:

common/stream.h:
