build-fuzz/obj/smtp-handler/smtp_data.o: smtp-handler/smtp_data.c \
  common/log.h common/maildate.h common/str.h common/maildir.h \
  smtp-handler/smtp.h common/addr.h common/strlist.h common/config.h \
  common/peer.h common/queue.h common/stream.h common/tls.h \
  common/users.h

common/log.h:

common/maildate.h:

common/str.h:

common/maildir.h:

smtp-handler/smtp.h:

common/addr.h:

common/strlist.h:

common/config.h:

common/peer.h:

common/queue.h:

common/stream.h:

common/tls.h:

common/users.h:
