build-fuzz/obj/common/dsn.o: common/dsn.c common/dsn.h common/queue.h \
  common/config.h common/str.h common/maildir.h common/strlist.h \
  common/maildate.h

common/dsn.h:

common/queue.h:

common/config.h:

common/str.h:

common/maildir.h:

common/strlist.h:

common/maildate.h:
