build-fuzz/obj/queue-runner/smtpc.o: queue-runner/smtpc.c common/auth.h \
  common/config.h common/str.h common/users.h common/strlist.h \
  common/log.h queue-runner/runner.h common/dns.h common/dsn.h \
  common/queue.h common/maildir.h common/stream.h common/tls.h

common/auth.h:

common/config.h:

common/str.h:

common/users.h:

common/strlist.h:

common/log.h:

queue-runner/runner.h:

common/dns.h:

common/dsn.h:

common/queue.h:

common/maildir.h:

common/stream.h:

common/tls.h:
