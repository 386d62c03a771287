build-fuzz/obj/imap-handler/imap_message.o: imap-handler/imap_message.c \
  imap-handler/imap.h common/config.h common/str.h \
  imap-handler/imap_folder.h imap-handler/imap_seqset.h common/maildir.h \
  common/strlist.h common/stream.h imap-handler/imap_parser.h \
  common/peer.h common/tls.h common/users.h imap-handler/imap_message.h \
  common/mime.h

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

imap-handler/imap_message.h:

common/mime.h:
