build/hA-san/tests/test_cfg: shared/log.h
