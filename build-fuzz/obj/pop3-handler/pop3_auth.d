build-fuzz/obj/pop3-handler/pop3_auth.o: pop3-handler/pop3_auth.c \
  common/auth.h common/config.h common/str.h common/users.h \
  common/strlist.h common/authlimit.h common/log.h pop3-handler/pop3.h \
  common/maildir_scan.h common/peer.h pop3-handler/pop3_cmd.h \
  common/stream.h common/tls.h

common/auth.h:

common/config.h:

common/str.h:

common/users.h:

common/strlist.h:

common/authlimit.h:

common/log.h:

pop3-handler/pop3.h:

common/maildir_scan.h:

common/peer.h:

pop3-handler/pop3_cmd.h:

common/stream.h:

common/tls.h:
