build/lead/obj/ws-server/handshake.o: ws-server/handshake.c \
 ws-server/handshake.h shared/cfg.h
ws-server/handshake.h:
shared/cfg.h:
