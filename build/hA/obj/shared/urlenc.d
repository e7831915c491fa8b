build/hA/obj/shared/urlenc.o: shared/urlenc.c shared/urlenc.h
shared/urlenc.h:
