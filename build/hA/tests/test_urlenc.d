build/hA/tests/test_urlenc: tests/unit/test_urlenc.c shared/urlenc.h
shared/urlenc.h:
