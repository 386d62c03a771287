build-fuzz/obj/common/log.o: common/log.c common/log.h common/str.h

common/log.h:

common/str.h:
