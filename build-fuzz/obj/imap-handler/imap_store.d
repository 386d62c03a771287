build-fuzz/obj/imap-handler/imap_store.o: imap-handler/imap_store.c \
  imap-handler/imap.h common/config.h common/str.h \
  imap-handler/imap_folder.h imap-handler/imap_seqset.h common/maildir.h \
  common/strlist.h common/stream.h imap-handler/imap_parser.h \
  common/peer.h common/tls.h common/users.h

imap-handler/imap.h:

common/config.h:

common/str.h:

imap-handler/imap_folder.h:

imap-handler/imap_seqset.h:

common/maildir.h:

common/strlist.h:

common/stream.h:

imap-handler/imap_parser.h:

common/peer.h:

common/tls.h:

common/users.h:
