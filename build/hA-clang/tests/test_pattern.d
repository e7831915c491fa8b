build/hA-clang/tests/test_pattern: tests/unit/test_pattern.c \
  shared/pattern.h shared/cfg.h

shared/pattern.h:

shared/cfg.h:
