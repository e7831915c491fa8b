build/lead/obj/ws-server/broker.o: ws-server/broker.c ws-server/broker.h \
 shared/buf.h ws-server/channel.h shared/ipc.h shared/buf.h \
 ws-server/frame.h
ws-server/broker.h:
shared/buf.h:
ws-server/channel.h:
shared/ipc.h:
shared/buf.h:
ws-server/frame.h:
