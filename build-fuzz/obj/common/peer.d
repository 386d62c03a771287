build-fuzz/obj/common/peer.o: common/peer.c common/peer.h common/log.h

common/peer.h:

common/log.h:
