# wspush — one Makefile for both programs, the CLI and the tests.
#   make            build build/bin/{ws-server,fcgi-publisher,wspush}
#   make test       install missing packages, build, run every test (twice:
#                   plain and with ASan+UBSan), print a summary line
#   make run        the demo: nginx + fcgi-publisher + ws-server on :8080
#   make SANITIZE=address,undefined   sanitizer build (in build/san/)
#   make clean

CC      ?= cc
PKGS    := libcrypto libjwt jansson inih
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wformat=2 -Wvla -fno-strict-aliasing -Ishared -MMD -MP \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null)

ifneq ($(SANITIZE),)
BUILD   ?= build/san
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
else
BUILD   ?= build
endif
BIN     := $(BUILD)/bin

SHARED_SRC := $(wildcard shared/*.c)
WS_SRC     := $(filter-out ws-server/main.c,$(wildcard ws-server/*.c))
PUB_SRC    := $(filter-out fcgi-publisher/main.c fcgi-publisher/cli.c,$(wildcard fcgi-publisher/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
SHARED_OBJ := $(call obj,$(SHARED_SRC))
WS_OBJ     := $(call obj,$(WS_SRC))
PUB_OBJ    := $(call obj,$(PUB_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

PROGRAMS := $(BIN)/ws-server $(BIN)/fcgi-publisher $(BIN)/wspush

.PHONY: all deps test unit integration run bench fuzz install clean
all: $(PROGRAMS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BIN)/ws-server: $(call obj,ws-server/main.c) $(WS_OBJ) $(SHARED_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/fcgi-publisher: $(call obj,fcgi-publisher/main.c) $(PUB_OBJ) $(SHARED_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/wspush: $(call obj,fcgi-publisher/cli.c) $(call obj,fcgi-publisher/pubclient.c) $(SHARED_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A unit test links the shared code plus its module of the same name
# (tests/unit/test_frame.c -> ws-server/frame.c); a test that needs more
# modules lists their sources in TEST_EXTRA_<name>.
TEST_EXTRA_history := ws-server/channel.c
define unit_rule
$(BUILD)/tests/test_$(1): tests/unit/test_$(1).c $(SHARED_OBJ) \
    $(call obj,$(wildcard ws-server/$(1).c fcgi-publisher/$(1).c) $(TEST_EXTRA_$(1)))
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) -Iws-server -Ifcgi-publisher $$(LDFLAGS) -o $$@ $$(filter %.c %.o,$$^) $$(LDLIBS) -lcmocka
endef
$(foreach t,$(patsubst tests/unit/test_%.c,%,$(UNIT_SRC)),$(eval $(call unit_rule,$(t))))

deps:
	@bash tests/deps.sh test

unit: $(UNIT_BIN)
	@bash tests/run-unit.sh $(UNIT_BIN)

integration: $(PROGRAMS)
	@WSPUSH_BIN=$(abspath $(BIN)) bash tests/run-integration.sh

test:
	@bash tests/deps.sh test
	@bash tests/run-all.sh

run:
	@bash tests/deps.sh run
	@$(MAKE) --no-print-directory all
	@exec bash conf/demo/run.sh $(abspath $(BIN))

bench:
	@bash tests/deps.sh bench
	@$(MAKE) --no-print-directory all
	@bash tests/bench/run.sh $(abspath $(BIN))

# libFuzzer targets, five minutes each (make test runs them briefly).
fuzz:
	@bash tests/deps.sh test
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-300} bash tests/fuzz/run.sh

PREFIX  ?= /usr/local
DESTDIR ?=
install: $(PROGRAMS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/wspush $(DESTDIR)/etc/wspush
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 conf/wspush.ini $(DESTDIR)$(PREFIX)/share/wspush/wspush.ini.example
	test -f $(DESTDIR)/etc/wspush/wspush.ini || install -m 0640 conf/wspush.ini $(DESTDIR)/etc/wspush/wspush.ini
	install -d $(DESTDIR)$(PREFIX)/share/wspush/js
	install -m 0644 conf/demo/www/wspush.js $(DESTDIR)$(PREFIX)/share/wspush/js/
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/lib/sysusers.d
	for u in conf/systemd/*.service; do \
	  sed 's#@PREFIX@#$(PREFIX)#g' $$u > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u); done
	install -m 0644 conf/systemd/wspush.sysusers.conf $(DESTDIR)$(PREFIX)/lib/sysusers.d/wspush.conf
	# The services run as user wspush: let its group read the ini.
	if getent group wspush >/dev/null; then chgrp wspush $(DESTDIR)/etc/wspush/wspush.ini; fi

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
