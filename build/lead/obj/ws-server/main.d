build/lead/obj/ws-server/main.o: ws-server/main.c shared/cfg.h \
 ws-server/ev.h shared/log.h ws-server/server.h ws-server/broker.h \
 shared/buf.h ws-server/channel.h shared/ipc.h shared/buf.h
shared/cfg.h:
ws-server/ev.h:
shared/log.h:
ws-server/server.h:
ws-server/broker.h:
shared/buf.h:
ws-server/channel.h:
shared/ipc.h:
shared/buf.h:
