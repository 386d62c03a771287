build-fuzz/obj/queue-runner/runner_msg.o: queue-runner/runner_msg.c \
  common/addr.h common/str.h common/strlist.h common/log.h \
  common/maildir.h queue-runner/runner.h common/config.h common/dns.h \
  common/dsn.h common/queue.h common/stream.h common/users.h

common/addr.h:

common/str.h:

common/strlist.h:

common/log.h:

common/maildir.h:

queue-runner/runner.h:

common/config.h:

common/dns.h:

common/dsn.h:

common/queue.h:

common/stream.h:

common/users.h:
