build/hA/tests/test_pattern: shared/cfg.h
