build-fuzz/obj/common/tls.o: common/tls.c common/tls.h common/config.h \
  common/str.h common/stream.h common/tls_module.h

common/tls.h:

common/config.h:

common/str.h:

common/stream.h:

common/tls_module.h:
