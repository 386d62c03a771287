build-fuzz/obj/common/addr.o: common/addr.c common/addr.h common/str.h \
  common/strlist.h

common/addr.h:

common/str.h:

common/strlist.h:
