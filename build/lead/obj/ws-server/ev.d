build/lead/obj/ws-server/ev.o: ws-server/ev.c ws-server/ev.h
ws-server/ev.h:
