build-fuzz/obj/common/queue.o: common/queue.c common/queue.h \
  common/config.h common/str.h common/maildir.h common/strlist.h

common/queue.h:

common/config.h:

common/str.h:

common/maildir.h:

common/strlist.h:
