build-fuzz/obj/common/mime.o: common/mime.c common/mime.h common/str.h

common/mime.h:

common/str.h:
