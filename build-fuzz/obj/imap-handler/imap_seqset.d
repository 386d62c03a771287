build-fuzz/obj/imap-handler/imap_seqset.o: imap-handler/imap_seqset.c \
  imap-handler/imap_seqset.h common/str.h

imap-handler/imap_seqset.h:

common/str.h:
