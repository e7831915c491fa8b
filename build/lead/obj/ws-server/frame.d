build/lead/obj/ws-server/frame.o: ws-server/frame.c ws-server/frame.h \
 shared/utf8.h
ws-server/frame.h:
shared/utf8.h:
