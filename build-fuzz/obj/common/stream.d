build-fuzz/obj/common/stream.o: common/stream.c common/stream.h \
  common/str.h

common/stream.h:

common/str.h:
