build/lead/obj/shared/utf8.o: shared/utf8.c shared/utf8.h
shared/utf8.h:
