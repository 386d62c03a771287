build-fuzz/obj/imap-handler/imap_auth.o: imap-handler/imap_auth.c \
  common/auth.h common/config.h common/str.h common/users.h \
  common/strlist.h common/authlimit.h imap-handler/imap.h \
  imap-handler/imap_folder.h imap-handler/imap_seqset.h common/maildir.h \
  common/stream.h imap-handler/imap_parser.h common/peer.h common/tls.h \
  common/log.h

common/auth.h:

common/config.h:

common/str.h:

common/users.h:

common/strlist.h:

common/authlimit.h:

imap-handler/imap.h:

imap-handler/imap_folder.h:

imap-handler/imap_seqset.h:

common/maildir.h:

common/stream.h:

imap-handler/imap_parser.h:

common/peer.h:

common/tls.h:

common/log.h:
