build/lead/obj/shared/pattern.o: shared/pattern.c shared/pattern.h \
 shared/cfg.h
shared/pattern.h:
shared/cfg.h:
