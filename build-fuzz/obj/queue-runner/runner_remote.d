build-fuzz/obj/queue-runner/runner_remote.o: queue-runner/runner_remote.c \
  common/addr.h common/str.h common/strlist.h common/auth.h \
  common/config.h common/users.h common/log.h queue-runner/runner.h \
  common/dns.h common/dsn.h common/queue.h common/maildir.h \
  common/stream.h

common/addr.h:

common/str.h:

common/strlist.h:

common/auth.h:

common/config.h:

common/users.h:

common/log.h:

queue-runner/runner.h:

common/dns.h:

common/dsn.h:

common/queue.h:

common/maildir.h:

common/stream.h:
