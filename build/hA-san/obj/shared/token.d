build/hA-san/obj/shared/token.o: shared/token.c shared/token.h \
 shared/cfg.h
shared/token.h:
shared/cfg.h:
