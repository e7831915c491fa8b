build/lead/obj/ws-server/sendq.o: ws-server/sendq.c ws-server/sendq.h \
 shared/buf.h
ws-server/sendq.h:
shared/buf.h:
