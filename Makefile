# sockmail — build, test, run, install.
#
#   make              build every program into build/
#   make check        unit tests (cmocka) + end-to-end tests (installs deps)
#   make check SANITIZE=1   the same with ASan+UBSan, built in build-san/
#   make run          all handlers on loopback high ports with a demo domain
#   make bench        benchmarks, printed beside reference figures
#   make install      DESTDIR=, PREFIX=/usr
#   make deps         install the Debian packages (as root) or print the line

PREFIX ?= /usr
DESTDIR ?=
CC ?= cc
PYTHON ?= /usr/bin/python3

ifeq ($(SANITIZE),1)
BUILD ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT = -O1
else
BUILD ?= build
SANFLAGS =
OPT = -O2
endif

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.1.0)
WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
       -Wformat=2 -Wno-format-nonliteral
CFLAGS ?= $(OPT) -g
ALL_CFLAGS = -std=c17 $(WARN) -D_GNU_SOURCE -DSOCKMAIL_VERSION='"$(VERSION)"' \
	     -Icommon $(SANFLAGS) $(CFLAGS) -MMD -MP
LDFLAGS ?=
ALL_LDFLAGS = -Wl,--as-needed $(SANFLAGS) $(LDFLAGS)
LIBS = -ltdb -lcrypt

# Debian packages the build, the tests and `make run` need.
DEB_PACKAGES = gcc make pkg-config libc6-dev libtdb-dev libcrypt-dev \
	       libsystemd-dev libgnutls28-dev libcmocka-dev systemd \
	       python3 swaks gnutls-bin tdb-tools

COMMON_SRC = $(wildcard common/*.c)
COMMON_OBJ = $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
LIBCOMMON = $(BUILD)/libcommon.a

PROGRAMS = smtp-handler sockmailctl
SMTP_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard smtp-handler/*.c))
CTL_OBJ = $(BUILD)/obj/ctl/sockmailctl.o

UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_SRC = $(wildcard tests/bench/*.c)
HELPER_BIN = $(HELPER_SRC:tests/bench/%.c=$(BUILD)/tests/%)

.PHONY: all check check-unit check-e2e run bench install uninstall clean deps

all: $(addprefix $(BUILD)/,$(PROGRAMS))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBCOMMON): $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/smtp-handler: $(SMTP_OBJ) $(LIBCOMMON)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/sockmailctl: $(CTL_OBJ) $(LIBCOMMON)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

$(BUILD)/tests/%: $(BUILD)/obj/tests/bench/%.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lpthread

deps:
	@sh tests/deps.sh $(DEB_PACKAGES)

check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN) $(HELPER_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run-all.sh

check-unit: all $(UNIT_BIN)
	@BUILD=$(BUILD) sh tests/run-all.sh unit

check-e2e: all $(HELPER_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run-all.sh e2e

run: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh tests/run-demo.sh

bench: deps
	@$(MAKE) --no-print-directory all $(HELPER_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) $(PYTHON) tests/bench/bench.py

install: all
	install -d $(DESTDIR)$(PREFIX)/libexec/sockmail $(DESTDIR)$(PREFIX)/sbin
	install -m 0755 $(BUILD)/smtp-handler $(DESTDIR)$(PREFIX)/libexec/sockmail/
	install -m 0755 $(BUILD)/sockmailctl $(DESTDIR)$(PREFIX)/sbin/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/libexec/sockmail/smtp-handler
	rm -f $(DESTDIR)$(PREFIX)/sbin/sockmailctl
	-rmdir $(DESTDIR)$(PREFIX)/libexec/sockmail

clean:
	rm -rf build build-san

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
