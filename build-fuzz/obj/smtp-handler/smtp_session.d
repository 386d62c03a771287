build-fuzz/obj/smtp-handler/smtp_session.o: smtp-handler/smtp_session.c \
  common/log.h smtp-handler/smtp.h common/addr.h common/str.h \
  common/strlist.h common/config.h common/peer.h common/queue.h \
  common/maildir.h common/stream.h common/tls.h common/users.h

common/log.h:

smtp-handler/smtp.h:

common/addr.h:

common/str.h:

common/strlist.h:

common/config.h:

common/peer.h:

common/queue.h:

common/maildir.h:

common/stream.h:

common/tls.h:

common/users.h:
