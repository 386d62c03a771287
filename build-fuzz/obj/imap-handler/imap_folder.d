build-fuzz/obj/imap-handler/imap_folder.o: imap-handler/imap_folder.c \
  imap-handler/imap_folder.h imap-handler/imap_seqset.h common/str.h \
  common/maildir.h common/strlist.h common/stream.h common/log.h

imap-handler/imap_folder.h:

imap-handler/imap_seqset.h:

common/str.h:

common/maildir.h:

common/strlist.h:

common/stream.h:

common/log.h:
