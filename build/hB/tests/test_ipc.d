build/hB/tests/test_ipc: shared/ipc.h shared/buf.h
shared/buf.h:
