build/lead/obj/ws-server/pubsock.o: ws-server/pubsock.c \
 ws-server/pubsock.h shared/addr.h shared/ipc.h shared/buf.h shared/log.h \
 shared/pattern.h shared/cfg.h ws-server/server.h ws-server/broker.h \
 shared/buf.h ws-server/channel.h shared/cfg.h ws-server/ev.h
ws-server/pubsock.h:
shared/addr.h:
shared/ipc.h:
shared/buf.h:
shared/log.h:
shared/pattern.h:
shared/cfg.h:
ws-server/server.h:
ws-server/broker.h:
shared/buf.h:
ws-server/channel.h:
shared/cfg.h:
ws-server/ev.h:
