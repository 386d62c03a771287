build-fuzz/obj/common/str.o: common/str.c common/str.h

common/str.h:
