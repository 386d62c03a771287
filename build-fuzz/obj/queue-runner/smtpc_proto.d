build-fuzz/obj/queue-runner/smtpc_proto.o: queue-runner/smtpc_proto.c \
  queue-runner/runner.h common/config.h common/str.h common/dns.h \
  common/dsn.h common/queue.h common/maildir.h common/strlist.h \
  common/stream.h common/users.h

queue-runner/runner.h:

common/config.h:

common/str.h:

common/dns.h:

common/dsn.h:

common/queue.h:

common/maildir.h:

common/strlist.h:

common/stream.h:

common/users.h:
