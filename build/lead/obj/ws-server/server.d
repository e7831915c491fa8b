build/lead/obj/ws-server/server.o: ws-server/server.c ws-server/server.h \
 ws-server/broker.h shared/buf.h ws-server/channel.h shared/ipc.h \
 shared/buf.h shared/cfg.h ws-server/ev.h shared/addr.h ws-server/conn.h \
 ws-server/handshake.h shared/log.h ws-server/pubsock.h
ws-server/server.h:
ws-server/broker.h:
shared/buf.h:
ws-server/channel.h:
shared/ipc.h:
shared/buf.h:
shared/cfg.h:
ws-server/ev.h:
shared/addr.h:
ws-server/conn.h:
ws-server/handshake.h:
shared/log.h:
ws-server/pubsock.h:
