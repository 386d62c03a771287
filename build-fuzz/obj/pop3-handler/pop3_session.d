build-fuzz/obj/pop3-handler/pop3_session.o: pop3-handler/pop3_session.c \
  common/log.h pop3-handler/pop3.h common/config.h common/str.h \
  common/maildir_scan.h common/peer.h pop3-handler/pop3_cmd.h \
  common/stream.h common/tls.h common/users.h common/strlist.h

common/log.h:

pop3-handler/pop3.h:

common/config.h:

common/str.h:

common/maildir_scan.h:

common/peer.h:

pop3-handler/pop3_cmd.h:

common/stream.h:

common/tls.h:

common/users.h:

common/strlist.h:
