build-fuzz/obj/common/users.o: common/users.c common/users.h common/str.h \
  common/strlist.h common/log.h common/addr.h

common/users.h:

common/str.h:

common/strlist.h:

common/log.h:

common/addr.h:
