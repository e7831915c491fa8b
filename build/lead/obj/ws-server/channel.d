build/lead/obj/ws-server/channel.o: ws-server/channel.c \
 ws-server/channel.h
ws-server/channel.h:
