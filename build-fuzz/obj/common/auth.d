build-fuzz/obj/common/auth.o: common/auth.c common/auth.h common/config.h \
  common/str.h common/users.h common/strlist.h common/peer.h \
  common/addr.h

common/auth.h:

common/config.h:

common/str.h:

common/users.h:

common/strlist.h:

common/peer.h:

common/addr.h:
