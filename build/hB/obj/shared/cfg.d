build/hB/obj/shared/cfg.o: shared/cfg.c shared/cfg.h shared/log.h
shared/cfg.h:
shared/log.h:
