build-fuzz/obj/common/dns.o: common/dns.c common/dns.h common/str.h

common/dns.h:

common/str.h:
