build/hA/obj/shared/addr.o: shared/addr.c shared/addr.h
shared/addr.h:
