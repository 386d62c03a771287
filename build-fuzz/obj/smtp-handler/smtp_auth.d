build-fuzz/obj/smtp-handler/smtp_auth.o: smtp-handler/smtp_auth.c \
  common/auth.h common/config.h common/str.h common/users.h \
  common/strlist.h common/authlimit.h common/log.h common/peer.h \
  smtp-handler/smtp.h common/addr.h common/queue.h common/maildir.h \
  common/stream.h common/tls.h

common/auth.h:

common/config.h:

common/str.h:

common/users.h:

common/strlist.h:

common/authlimit.h:

common/log.h:

common/peer.h:

smtp-handler/smtp.h:

common/addr.h:

common/queue.h:

common/maildir.h:

common/stream.h:

common/tls.h:
