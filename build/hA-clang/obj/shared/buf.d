build/hA-clang/obj/shared/buf.o: shared/buf.c shared/buf.h

shared/buf.h:
