build-fuzz/obj/common/maildir_scan.o: common/maildir_scan.c \
  common/maildir_scan.h common/str.h common/maildir.h

common/maildir_scan.h:

common/str.h:

common/maildir.h:
