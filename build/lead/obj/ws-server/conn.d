build/lead/obj/ws-server/conn.o: ws-server/conn.c ws-server/conn.h \
 shared/buf.h ws-server/server.h ws-server/broker.h ws-server/channel.h \
 shared/ipc.h shared/buf.h shared/cfg.h ws-server/ev.h ws-server/frame.h \
 ws-server/handshake.h shared/log.h shared/pattern.h shared/cfg.h \
 ws-server/sendq.h shared/token.h shared/urlenc.h shared/utf8.h
ws-server/conn.h:
shared/buf.h:
ws-server/server.h:
ws-server/broker.h:
ws-server/channel.h:
shared/ipc.h:
shared/buf.h:
shared/cfg.h:
ws-server/ev.h:
ws-server/frame.h:
ws-server/handshake.h:
shared/log.h:
shared/pattern.h:
shared/cfg.h:
ws-server/sendq.h:
shared/token.h:
shared/urlenc.h:
shared/utf8.h:
