build/hB/tests/test_utf8: tests/unit/test_utf8.c shared/utf8.h
shared/utf8.h:
