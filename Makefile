# sockmail — build, test, run, install.
#
#   make              build every program into build/
#   make check        unit tests (cmocka) + end-to-end tests (installs deps)
#   make check SANITIZE=1   the same with ASan+UBSan, built in build-san/
#   make check VALGRIND=1   end-to-end tests with every handler under valgrind
#   make check-systemd the installed units under a real systemd (root)
#   make fuzz         every libFuzzer target for FUZZ_SECONDS (clang)
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
	       python3 swaks gnutls-bin tdb-tools fetchmail curl dnsmasq-base \
	       isync systemd-container debootstrap clang libclang-rt-14-dev \
	       valgrind strace

# tls_module.c is the GnuTLS module, dlopen()ed on first use (see
# common/tls.h): never part of libcommon.
COMMON_SRC = $(filter-out common/tls_module.c,$(wildcard common/*.c))
COMMON_OBJ = $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
LIBCOMMON = $(BUILD)/libcommon.a
TLS_MODULE = $(BUILD)/sockmail-tls.so

PROGRAMS = smtp-handler pop3-handler imap-handler sockmailctl sendmail queue-runner
SMTP_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard smtp-handler/*.c))
POP3_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard pop3-handler/*.c))
IMAP_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard imap-handler/*.c))
# imap-handler without its main, for the unit tests.
LIBIMAP = $(BUILD)/libimap.a
CTL_OBJ = $(BUILD)/obj/ctl/sockmailctl.o
SENDMAIL_OBJ = $(BUILD)/obj/ctl/sendmail.o
RUNNER_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard queue-runner/*.c))
RUNNER_LIB_OBJ = $(filter-out %/runner_main.o,$(RUNNER_OBJ))

UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_SRC = $(wildcard tests/bench/*.c)
HELPER_BIN = $(HELPER_SRC:tests/bench/%.c=$(BUILD)/tests/%) \
	     $(if $(wildcard tests/faults/faultinject.c),$(BUILD)/tests/libfaultinject.so)

.PHONY: all check check-unit check-e2e check-units check-systemd fuzz fuzz-build run bench install uninstall clean deps

all: $(addprefix $(BUILD)/,$(PROGRAMS)) $(TLS_MODULE)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# Only imap-handler and its tests see its headers; smtp-handler's likewise.
$(BUILD)/obj/imap-handler/%.o $(BUILD)/obj/tests/unit/test_imap_%.o: ALL_CFLAGS += -Iimap-handler
$(BUILD)/obj/tests/unit/test_smtp_%.o: ALL_CFLAGS += -Ismtp-handler

$(LIBCOMMON): $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

# -z defs: the module must be self-contained (no libcommon symbols).
$(TLS_MODULE): common/tls_module.c common/tls_module.h
	@mkdir -p $(BUILD)/obj/common
	$(CC) $(ALL_CFLAGS) -MF $(BUILD)/obj/common/tls_module.so.d -fPIC -shared \
		$(ALL_LDFLAGS) -Wl,-z,defs -o $@ $< -lgnutls

$(BUILD)/smtp-handler: $(SMTP_OBJ) $(LIBCOMMON)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/pop3-handler: $(POP3_OBJ) $(LIBCOMMON)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/imap-handler: $(IMAP_OBJ) $(LIBCOMMON)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(LIBIMAP): $(filter-out %/imap_main.o,$(IMAP_OBJ))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/sockmailctl: $(CTL_OBJ) $(LIBCOMMON)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/sendmail: $(SENDMAIL_OBJ) $(LIBCOMMON)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# No -lsystemd: loading it cost half of an idle run (runner_main.c).
$(BUILD)/queue-runner: $(RUNNER_OBJ) $(LIBCOMMON)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lresolv

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# test_pop3_* also link pop3-handler's command parser.
$(BUILD)/tests/test_pop3_%: $(BUILD)/obj/tests/unit/test_pop3_%.o \
			    $(BUILD)/obj/pop3-handler/pop3_cmd.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# test_smtp_* also link smtp-handler (all but its main).
$(BUILD)/tests/test_smtp_%: $(BUILD)/obj/tests/unit/test_smtp_%.o \
			    $(filter-out %/smtp_main.o,$(SMTP_OBJ)) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# test_imap_* also link imap-handler (all but its main).
$(BUILD)/tests/test_imap_%: $(BUILD)/obj/tests/unit/test_imap_%.o \
			    $(LIBIMAP) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# common/dns.c parses answers with libresolv's ns_* functions.
$(BUILD)/tests/test_dns: $(BUILD)/obj/tests/unit/test_dns.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lresolv -lcmocka

# test_runner_* also link the queue runner (all but its main).
$(BUILD)/tests/test_runner_%: $(BUILD)/obj/tests/unit/test_runner_%.o \
			      $(RUNNER_LIB_OBJ) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lresolv -lcmocka

# test_tls drives the module (found at ../sockmail-tls.so) and plays the
# client side with GnuTLS directly.
$(BUILD)/tests/test_tls: $(BUILD)/obj/tests/unit/test_tls.o $(LIBCOMMON) | $(TLS_MODULE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka -lgnutls

# The fault-injection shim (issue 8), LD_PRELOADed into handlers by the
# fault tests: never built with the sanitizers (they interpose too).
$(BUILD)/tests/libfaultinject.so: tests/faults/faultinject.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 $(WARN) -D_GNU_SOURCE -O2 -g -fPIC -shared -o $@ $< -ldl

$(BUILD)/tests/tls_blast: $(BUILD)/obj/tests/bench/tls_blast.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lgnutls

$(BUILD)/tests/%: $(BUILD)/obj/tests/bench/%.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lpthread

deps:
	@sh tests/deps.sh $(DEB_PACKAGES)

check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN) $(HELPER_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run-all.sh
ifneq ($(SANITIZE)$(VALGRIND),1)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory check-systemd; \
	else echo "check-systemd: skipped (needs root: sudo make check-systemd)"; fi
endif

# The installed units under a real systemd in systemd-nspawn (root only).
check-systemd: all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/systemd/run.sh

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
	@BUILD=$(BUILD) $(PYTHON) tests/bench/bench_tls.py
	@BUILD=$(BUILD) $(PYTHON) tests/bench/bench_queue.py
	@BUILD=$(BUILD) $(PYTHON) tests/bench/bench_imap.py

# systemd units (units/): the unit directory systemd's pkg-config names;
# ExecStart= paths follow PREFIX.
SYSTEMDUNITDIR ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
UNITS = $(wildcard units/*.socket units/*.service units/*.timer units/*.path units/*.target)
UNIT_SED = s|/usr/libexec/sockmail/|$(PREFIX)/libexec/sockmail/|
MANDIR ?= $(PREFIX)/share/man
MAN8 = smtp-handler/smtp-handler.8 pop3-handler/pop3-handler.8 \
       imap-handler/imap-handler.8 queue-runner/queue-runner.8 \
       ctl/sockmailctl.8 ctl/sockmail-sendmail.8

install: all
	install -d $(DESTDIR)$(PREFIX)/libexec/sockmail $(DESTDIR)$(PREFIX)/sbin
	install -m 0755 $(BUILD)/smtp-handler $(DESTDIR)$(PREFIX)/libexec/sockmail/
	install -m 0755 $(BUILD)/pop3-handler $(DESTDIR)$(PREFIX)/libexec/sockmail/
	install -m 0755 $(BUILD)/imap-handler $(DESTDIR)$(PREFIX)/libexec/sockmail/
	install -m 0755 $(BUILD)/queue-runner $(DESTDIR)$(PREFIX)/libexec/sockmail/
	install -m 0644 $(TLS_MODULE) $(DESTDIR)$(PREFIX)/libexec/sockmail/
	install -m 0755 $(BUILD)/sockmailctl $(DESTDIR)$(PREFIX)/sbin/
	install -m 0755 $(BUILD)/sendmail $(DESTDIR)$(PREFIX)/sbin/sockmail-sendmail
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	for u in $(notdir $(UNITS)); do \
		sed '$(UNIT_SED)' units/$$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u || exit 1; \
	done
	install -d $(DESTDIR)/usr/lib/sysusers.d $(DESTDIR)/usr/lib/tmpfiles.d
	install -m 0644 units/sysusers.d/sockmail.conf $(DESTDIR)/usr/lib/sysusers.d/sockmail.conf
	install -m 0644 units/tmpfiles.d/sockmail.conf $(DESTDIR)/usr/lib/tmpfiles.d/sockmail.conf
	install -d $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 units/sockmail.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 units/sockmail.7 $(DESTDIR)$(MANDIR)/man7/
	install -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	for l in sendmail:sbin mailq:bin; do \
		n=$${l%%:*}; d=$(DESTDIR)/usr/$${l#*:}; install -d $$d; \
		test -e $$d/$$n || test -L $$d/$$n || \
			ln -s $(PREFIX)/sbin/sockmail-sendmail $$d/$$n; \
	done
	install -d $(DESTDIR)/etc/sockmail
	test -e $(DESTDIR)/etc/sockmail/sockmail.conf || \
		install -m 0644 units/sockmail.conf.example $(DESTDIR)/etc/sockmail/sockmail.conf

# The configuration is the sysadmin's: removed only if never edited.
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/libexec/sockmail/smtp-handler
	rm -f $(DESTDIR)$(PREFIX)/libexec/sockmail/pop3-handler
	rm -f $(DESTDIR)$(PREFIX)/libexec/sockmail/imap-handler
	rm -f $(DESTDIR)$(PREFIX)/libexec/sockmail/queue-runner
	rm -f $(DESTDIR)$(PREFIX)/libexec/sockmail/sockmail-tls.so
	rm -f $(DESTDIR)$(PREFIX)/sbin/sockmailctl
	rm -f $(DESTDIR)$(PREFIX)/sbin/sockmail-sendmail
	-rmdir $(DESTDIR)$(PREFIX)/libexec/sockmail
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(notdir $(UNITS)))
	rm -f $(DESTDIR)/usr/lib/sysusers.d/sockmail.conf
	rm -f $(DESTDIR)$(MANDIR)/man5/sockmail.conf.5 $(DESTDIR)$(MANDIR)/man7/sockmail.7
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8)))
	for l in sbin/sendmail bin/mailq; do \
		[ "$$(readlink $(DESTDIR)/usr/$$l)" = $(PREFIX)/sbin/sockmail-sendmail ] && \
			rm -f $(DESTDIR)/usr/$$l; true; \
	done
	rm -f $(DESTDIR)/usr/lib/tmpfiles.d/sockmail.conf
	if cmp -s units/sockmail.conf.example $(DESTDIR)/etc/sockmail/sockmail.conf; then \
		rm -f $(DESTDIR)/etc/sockmail/sockmail.conf; \
		rmdir $(DESTDIR)/etc/sockmail 2>/dev/null || true; \
	fi

# systemd-analyze verify on copies of the units whose ExecStart= points at
# build/ (it checks that the programs exist): any output fails.  Then each
# service's exposure.  Not part of `make check`.
check-units: all
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	for u in $(notdir $(UNITS)); do \
		sed 's|/usr/libexec/sockmail/|$(CURDIR)/$(BUILD)/|' units/$$u > "$$tmp/$$u" || exit 1; \
	done && \
	out=$$(cd "$$tmp" && systemd-analyze verify $(notdir $(UNITS)) 2>&1); \
	if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; \
	for s in $(notdir $(filter %.service,$(UNITS))); do \
		systemd-analyze security --offline=yes "$$tmp/$$s" 2>&1 | tail -n 1 || exit 1; \
	done

# libFuzzer targets (issue 8): tests/fuzz/fuzz_<name>.c, each built with
# clang against every program's code (all but the mains, as archives, so a
# target pulls in only what it uses).  `make fuzz FUZZ_SECONDS=N` runs each
# for N seconds from its seed corpus tests/fuzz/corpus/<name>/; new inputs
# go to build-fuzz/corpus/, crashes to build-fuzz/crashes/.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 20
FUZZ_JOBS ?= 2
FUZZ_BUILD = build-fuzz
FUZZ_CFLAGS = -std=c17 -g -O1 -D_GNU_SOURCE -DSOCKMAIL_VERSION='"$(VERSION)"' \
	      -DSOCKMAIL_FUZZ -Icommon -Iimap-handler -Ipop3-handler -Ismtp-handler \
	      -Iqueue-runner -fsanitize=fuzzer-no-link,address,undefined \
	      -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_LIB_SRC = $(COMMON_SRC) \
	$(filter-out %/imap_main.c,$(wildcard imap-handler/*.c)) \
	$(filter-out %/pop3_main.c,$(wildcard pop3-handler/*.c)) \
	$(filter-out %/smtp_main.c,$(wildcard smtp-handler/*.c)) \
	$(filter-out %/runner_main.c,$(wildcard queue-runner/*.c))
FUZZ_LIB_OBJ = $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN = $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libfuzzall.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libfuzzall.a
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LIBS) -lresolv

fuzz-build: $(FUZZ_BIN)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) \
		sh tests/fuzz/run.sh $(notdir $(FUZZ_BIN))

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD)/obj $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
