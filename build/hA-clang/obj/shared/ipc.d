build/hA-clang/obj/shared/ipc.o: shared/ipc.c shared/ipc.h shared/buf.h

shared/ipc.h:

shared/buf.h:
