build-fuzz/obj/common/authlimit.o: common/authlimit.c common/authlimit.h \
  common/config.h common/str.h common/log.h

common/authlimit.h:

common/config.h:

common/str.h:

common/log.h:
