build-fuzz/obj/common/maildate.o: common/maildate.c common/maildate.h \
  common/str.h

common/maildate.h:

common/str.h:
