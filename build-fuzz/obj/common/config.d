build-fuzz/obj/common/config.o: common/config.c common/config.h \
  common/str.h

common/config.h:

common/str.h:
