build-fuzz/obj/imap-handler/imap_search.o: imap-handler/imap_search.c \
  imap-handler/imap.h common/config.h common/str.h \
  imap-handler/imap_folder.h imap-handler/imap_seqset.h common/maildir.h \
  common/strlist.h common/stream.h imap-handler/imap_parser.h \
  common/peer.h common/tls.h common/users.h imap-handler/imap_message.h \
  common/mime.h imap-handler/imap_search.h common/mime_decode.h

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

imap-handler/imap_search.h:

common/mime_decode.h:
