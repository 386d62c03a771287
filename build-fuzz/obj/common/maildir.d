build-fuzz/obj/common/maildir.o: common/maildir.c common/maildir.h \
  common/str.h

common/maildir.h:

common/str.h:
