build-fuzz/obj/pop3-handler/pop3_cmd.o: pop3-handler/pop3_cmd.c \
  pop3-handler/pop3_cmd.h

pop3-handler/pop3_cmd.h:
