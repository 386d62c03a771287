build-fuzz/obj/common/mime_decode.o: common/mime_decode.c \
  common/mime_decode.h common/str.h

common/mime_decode.h:

common/str.h:
