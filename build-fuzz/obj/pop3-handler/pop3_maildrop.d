build-fuzz/obj/pop3-handler/pop3_maildrop.o: pop3-handler/pop3_maildrop.c \
  common/log.h common/maildir.h common/str.h pop3-handler/pop3.h \
  common/config.h common/maildir_scan.h common/peer.h \
  pop3-handler/pop3_cmd.h common/stream.h common/tls.h common/users.h \
  common/strlist.h

common/log.h:

common/maildir.h:

common/str.h:

pop3-handler/pop3.h:

common/config.h:

common/maildir_scan.h:

common/peer.h:

pop3-handler/pop3_cmd.h:

common/stream.h:

common/tls.h:

common/users.h:

common/strlist.h:
