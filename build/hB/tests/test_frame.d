build/hB/tests/test_frame: tests/unit/test_frame.c ws-server/frame.h
ws-server/frame.h:
