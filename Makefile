# wspush — one Makefile for both programs, the CLI and the tests.
#   make            build build/bin/{ws-server,fcgi-publisher,wspush}
#   make test       install missing packages, build, run every test (twice:
#                   plain and with ASan+UBSan), print a summary line
#   make run        the demo: nginx + fcgi-publisher + ws-server on :8080
#   make run-php    the PHP example site (conf/php/): php-fpm + nginx + the two on :8080
#   make SANITIZE=address,undefined   sanitizer build (in build/san/)
#   make fuzz-build     the libFuzzer targets (clang) in build/fuzz/
#   make clean

CC      ?= cc
# What the project needs lives in WSPUSH_*; the standard variables are the
# user's and only add to it, so `make CFLAGS=-O0` keeps -std, -Werror, -I
# and the dependency files:
#   CFLAGS  ?= -O2 -g   appended after WSPUSH_CFLAGS (optimisation, -g, extras)
#   CPPFLAGS, LDFLAGS, LDLIBS   appended after the project's own
CFLAGS  ?= -O2 -g
WSPUSH_BASE     := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
                   -Wformat=2 -Wvla -fno-strict-aliasing -Ishared -MMD -MP
WSPUSH_CFLAGS   = $(WSPUSH_BASE) $(PKG_CFLAGS) $(SAN_CFLAGS)
WSPUSH_LDFLAGS  = $(SAN_LDFLAGS)
WSPUSH_LDLIBS   = $(PKG_LIBS)
COMPILE = $(CC) $(WSPUSH_CFLAGS) $(CPPFLAGS) $(CFLAGS)
LINK    = $(CC) $(WSPUSH_LDFLAGS) $(LDFLAGS)

# The pkg-config packages the programs link. They are looked up the first
# time a recipe compiles or links (not when the Makefile is read), so
# `make clean` and `make test` (which installs them first) work on a bare
# machine; a missing one stops make with its name instead of a missing-header
# error. `make PKGS='libcrypto nosuchpkg'` shows the message.
PKGS    := libssl libcrypto libjwt jansson inih zlib hiredis
deb_libssl    := libssl-dev
deb_libcrypto := libssl-dev
deb_libjwt    := libjwt-dev
deb_jansson   := libjansson-dev
deb_inih      := libinih-dev
deb_zlib      := zlib1g-dev
deb_hiredis   := libhiredis-dev
deb_pkg-config := pkg-config
pkg_missing = $(strip $(if $(shell pkg-config --version 2>/dev/null),$(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) && echo y),,$(p))),pkg-config))
pkg_what    = $(if $(filter pkg-config,$(pkg_missing)),the pkg-config program,pkg-config package(s) $(pkg_missing))
pkg_check   = $(if $(pkg_missing),$(error cannot build: missing $(pkg_what). Fix: run `bash tests/deps.sh build` \
  as root, or apt-get install $(foreach p,$(pkg_missing),$(or $(deb_$(p)),$(p)-dev))))
# Looked up on first use, then cached: the := inside $(eval) replaces the
# recursive definition.
PKG_CFLAGS  = $(eval PKG_CFLAGS := $(pkg_check)$(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS    = $(eval PKG_LIBS := $(pkg_check)$(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)

ifneq ($(SANITIZE),)
BUILD   ?= build/san
SAN_CFLAGS  := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_LDFLAGS := -fsanitize=$(SANITIZE)
else
BUILD   ?= build
endif
BIN     := $(BUILD)/bin

SHARED_SRC := $(wildcard shared/*.c)
WS_SRC     := $(filter-out ws-server/main.c,$(wildcard ws-server/*.c))
PUB_SRC    := $(filter-out fcgi-publisher/main.c fcgi-publisher/cli.c fcgi-publisher/cli_stats.c,$(wildcard fcgi-publisher/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
SHARED_OBJ := $(call obj,$(SHARED_SRC))
WS_OBJ     := $(call obj,$(WS_SRC))
PUB_OBJ    := $(call obj,$(PUB_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

PROGRAMS := $(BIN)/ws-server $(BIN)/fcgi-publisher $(BIN)/wspush

.PHONY: all deps test unit integration run run-php run-cluster bench fuzz fuzz-build install clean
all: $(PROGRAMS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(COMPILE) -c -o $@ $<

$(BIN)/ws-server: $(call obj,ws-server/main.c) $(WS_OBJ) $(SHARED_OBJ)
	@mkdir -p $(dir $@)
	$(LINK) -o $@ $^ $(WSPUSH_LDLIBS) $(LDLIBS)

$(BIN)/fcgi-publisher: $(call obj,fcgi-publisher/main.c) $(PUB_OBJ) $(SHARED_OBJ)
	@mkdir -p $(dir $@)
	$(LINK) -o $@ $^ $(WSPUSH_LDLIBS) $(LDLIBS)

$(BIN)/wspush: $(call obj,fcgi-publisher/cli.c fcgi-publisher/cli_stats.c fcgi-publisher/pubclient.c) $(SHARED_OBJ)
	@mkdir -p $(dir $@)
	$(LINK) -o $@ $^ $(WSPUSH_LDLIBS) $(LDLIBS)

# A unit test links the shared code plus its module of the same name
# (tests/unit/test_frame.c -> ws-server/frame.c); a test that needs more
# modules lists their sources in TEST_EXTRA_<name>.
TEST_EXTRA_history := ws-server/channel.c ws-server/msg.c
TEST_EXTRA_sendq   := ws-server/io_plain.c
TEST_EXTRA_engine  := ws-server/engine_memory.c ws-server/history.c ws-server/channel.c ws-server/msg.c ws-server/msgid.c
TEST_EXTRA_conn    := ws-server/frame.c ws-server/handshake.c ws-server/sendq.c ws-server/msg.c ws-server/stats.c \
                      ws-server/sse.c ws-server/pmdeflate.c
TEST_EXTRA_sse     := ws-server/msg.c
TEST_EXTRA_pubsock := ws-server/stats.c
TEST_EXTRA_revoke  := ws-server/channel.c
TEST_EXTRA_peers   := ws-server/channel.c
TEST_EXTRA_session := ws-server/hub.c ws-server/channel.c ws-server/msg.c ws-server/revoke.c ws-server/msgid.c
TEST_EXTRA_tally   := ws-server/stats.c
TEST_EXTRA_redis_msg := ws-server/msgid.c
TEST_EXTRA_redis_history := ws-server/msgid.c
# A test linking a library beyond the programs' names it in TEST_LIBS_<name>.
TEST_EXTRA_fcgi_libfcgi := fcgi-publisher/fcgi.c fcgi-publisher/front.c tests/diff/fcgi_diff.c
TEST_LIBS_fcgi_libfcgi  := -lfcgi
# tests/diff/: harnesses shared by a unit test and a fuzz target.
$(BUILD)/obj/tests/diff/%.o: WSPUSH_CFLAGS += -Ifcgi-publisher
define unit_rule
$(BUILD)/tests/test_$(1): tests/unit/test_$(1).c $(SHARED_OBJ) \
    $(call obj,$(wildcard ws-server/$(1).c fcgi-publisher/$(1).c) $(TEST_EXTRA_$(1)))
	@mkdir -p $$(dir $$@)
	$$(COMPILE) -Iws-server -Ifcgi-publisher $$(WSPUSH_LDFLAGS) $$(LDFLAGS) -o $$@ $$(filter %.c %.o,$$^) \
	    $$(WSPUSH_LDLIBS) $$(TEST_LIBS_$(1)) -lcmocka $$(LDLIBS)
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

run-php:
	@bash tests/deps.sh run-php
	@$(MAKE) --no-print-directory all
	@WSPUSH_DEMO_SITE=php exec bash conf/demo/run.sh $(abspath $(BIN))

# Two sites of `make run` (site A on 8080, site B on 8090) sharing one Redis
# (engine = redis) and one secret: docs/cluster.md.
run-cluster:
	@bash tests/deps.sh run-cluster
	@$(MAKE) --no-print-directory all
	@exec bash conf/demo/run-cluster.sh $(abspath $(BIN))

bench:
	@bash tests/deps.sh bench
	@$(MAKE) --no-print-directory all
	@bash tests/bench/run.sh $(abspath $(BIN))

# libFuzzer targets: tests/fuzz/fuzz_<name>.c -> $(FUZZ_OUT)/fuzz_<name>,
# built with clang and ASan+UBSan. A target links shared/*.c plus its module
# of the same name (fuzz_frame.c -> ws-server/frame.c; none for fuzz_cfg.c,
# whose cfg.c is in shared/); one that needs more modules lists their
# sources in FUZZ_EXTRA_<name>, never a whole folder.
#   make fuzz-build     build them all (FUZZ_TARGETS='frame ipc': a subset)
#   make fuzz           run each five minutes (make test runs them briefly);
#                       tests/fuzz/run.sh replays, fuzzes and reports
# The project's warnings apply, but -Werror only to the fuzz_*.c files: clang
# warns about things gcc does not in the modules, and that is for the build
# stages to judge, not this one.
FUZZ_CC      ?= clang
FUZZ_CFLAGS  ?= -g -O1
FUZZ_OUT     ?= build/fuzz
FUZZ_EXTRA_history := ws-server/channel.c ws-server/msg.c ws-server/revoke.c
FUZZ_EXTRA_sse     := ws-server/msg.c
FUZZ_EXTRA_redis_msg := ws-server/msgid.c
FUZZ_EXTRA_redis_history := ws-server/msgid.c
FUZZ_EXTRA_fcgi_libfcgi := fcgi-publisher/fcgi.c fcgi-publisher/front.c tests/diff/fcgi_diff.c
# A target linking a library beyond the programs' names it in FUZZ_LIBS_<name>.
FUZZ_LIBS_fcgi_libfcgi  := -lfcgi
FUZZ_EXTRA_lcproto := tests/bench/lcproto.c
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_BIN      = $(patsubst %,$(FUZZ_OUT)/fuzz_%,$(FUZZ_TARGETS))
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_COMPILE  = $(FUZZ_CC) $(filter-out -Werror,$(WSPUSH_BASE)) -Iws-server -Ifcgi-publisher -Itests/fuzz \
                $(PKG_CFLAGS) $(FUZZ_SAN) $(CPPFLAGS) $(FUZZ_CFLAGS)
fuzz_obj = $(patsubst %.c,$(FUZZ_OUT)/obj/%.o,$(1))
FUZZ_SHARED_OBJ := $(call fuzz_obj,$(SHARED_SRC))

$(FUZZ_OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_COMPILE) -fsanitize=fuzzer-no-link -c -o $@ $<

define fuzz_rule
$(FUZZ_OUT)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(FUZZ_SHARED_OBJ) \
    $(call fuzz_obj,$(wildcard ws-server/$(1).c fcgi-publisher/$(1).c) $(FUZZ_EXTRA_$(1)))
	@mkdir -p $$(dir $$@)
	$$(FUZZ_COMPILE) -Werror -fsanitize=fuzzer -o $$@ $$(filter %.c %.o,$$^) $$(PKG_LIBS) $$(FUZZ_LIBS_$(1))
endef
$(foreach t,$(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC)),$(eval $(call fuzz_rule,$(t))))

fuzz-build: $(FUZZ_BIN)

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
	install -d $(DESTDIR)$(PREFIX)/share/wspush/php
	install -m 0644 php/WsPush.php $(DESTDIR)$(PREFIX)/share/wspush/php/
	install -m 0644 conf/prometheus/wspush-alerts.yml conf/grafana/wspush-ws-server.json \
	    conf/grafana/wspush-publisher.json $(DESTDIR)$(PREFIX)/share/wspush/
	# The web-server configs (docs/webservers.md) and the JSON error
	# documents lighttpd and H2O serve.
	for d in nginx apache lighttpd caddy h2o errors; do \
	  install -d $(DESTDIR)$(PREFIX)/share/wspush/$$d && \
	  install -m 0644 conf/$$d/* $(DESTDIR)$(PREFIX)/share/wspush/$$d/ || exit 1; done
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/lib/sysusers.d
	for u in conf/systemd/*.service; do \
	  sed 's#@PREFIX@#$(PREFIX)#g' $$u > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u); done
	install -m 0644 conf/systemd/wspush.sysusers.conf $(DESTDIR)$(PREFIX)/lib/sysusers.d/wspush.conf
	# The services run as user wspush: let its group read the ini.
	if getent group wspush >/dev/null; then chgrp wspush $(DESTDIR)/etc/wspush/wspush.ini; fi

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
