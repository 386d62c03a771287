build-fuzz/obj/common/cmdline.o: common/cmdline.c common/cmdline.h \
  common/log.h

common/cmdline.h:

common/log.h:
