build-fuzz/obj/common/strlist.o: common/strlist.c common/strlist.h \
  common/str.h

common/strlist.h:

common/str.h:
