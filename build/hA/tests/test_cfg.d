build/hA/tests/test_cfg: tests/unit/test_cfg.c shared/cfg.h shared/log.h
shared/cfg.h:
shared/log.h:
