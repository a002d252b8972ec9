# stallmesh: plain GNU make, pkg-config for every dependency (STYLE 15).
#
#   make            build/stallmesh and build/libstallmesh.a
#   make run        install missing packages, build, start a node (see README)
#   make test       install missing packages, unit tests, the same under ASan+UBSan,
#                   integration and browser tests, the simulator (sim-check, sim-selftest),
#                   the arm64 build's tests under qemu (test-arm64)
#   make sim        the simulator on seeds 1..SEEDS (default 2000): README "Simulator"
#   make browser    the pages in Chromium against a real node (tests/browser)
#   make bench      benchmarks (prints figures and how they were measured)
#   make demo       an organiser and three stalls on 127.0.0.1 with a catalog and
#                   a slow stream of sales, until Ctrl-C (deploy/demo.sh)
#   make fuzz       libFuzzer targets for the entry and mesh message decoders (clang)
#   make cross-arm64  build-arm64/stallmesh for a Raspberry Pi (arm64), cross-compiled
#   make test-arm64   that build's unit tests and a smoke test under qemu (no binfmt)
#   make install    PREFIX=/usr/local DESTDIR= (also: make uninstall)

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
BUILD   ?= build

PKGS    := libzmq lmdb libsodium msgpack libwebsockets jansson inih libqrencode libcurl openssl
PKG_CONFIG ?= pkg-config
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Iinclude -Isrc $(PKG_CFLAGS)
# libev: the web loop on epoll (it ships no pkg-config file).
LDLIBS  := $(PKG_LIBS) -lev -lpthread -lm

SAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_BUILD  := $(BUILD)/san

CLI_SRCS := src/main.c $(wildcard src/cli_*.c)
LIB_SRCS := $(filter-out $(CLI_SRCS),$(wildcard src/*.c))
# The pages (www/) are embedded in the library as generated C (src/assets.h).
WWW_FILES := $(sort $(wildcard www/*))
GEN_ASSETS := $(BUILD)/gen/assets.c
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen_assets.o
CLI_OBJS := $(CLI_SRCS:src/%.c=$(BUILD)/obj/%.o)
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TESTS     := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
SAN_LIB_OBJS := $(LIB_SRCS:src/%.c=$(SAN_BUILD)/obj/%.o) $(SAN_BUILD)/obj/gen_assets.o
SAN_TESTS := $(TEST_SRCS:tests/unit/%.c=$(SAN_BUILD)/tests/%)
TEST_SUPPORT := $(wildcard tests/unit/support/*.c)
BENCH_SRCS := $(wildcard tests/bench/bench_*.c)
BENCHES   := $(BENCH_SRCS:tests/bench/%.c=$(BUILD)/bench/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOLS     := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)

.PHONY: all deps run demo test unit unit-san integration browser faults soak bench tools test-systemd \
        fuzz install uninstall clean sim sim-check sim-selftest cross-arm64 test-arm64
all: $(BUILD)/stallmesh $(BUILD)/libstallmesh.a

deps:
	@sh deploy/deps.sh

$(BUILD)/obj/%.o: src/%.c $(wildcard include/stallmesh/*.h src/*.h) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@
# www itself is a prerequisite so that adding or removing a file regenerates.
$(GEN_ASSETS): deploy/embed.sh www $(WWW_FILES) | $(BUILD)/gen
	sh deploy/embed.sh $@ $(WWW_FILES)
$(BUILD)/obj/gen_assets.o: $(GEN_ASSETS) src/assets.h | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/libstallmesh.a: $(LIB_OBJS)
	ar rcs $@ $^
$(BUILD)/stallmesh: $(CLI_OBJS) $(BUILD)/libstallmesh.a
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libstallmesh.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(TEST_SUPPORT) $(BUILD)/libstallmesh.a | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -Itests/unit -Itests/unit/support -o $@ $< $(TEST_SUPPORT) $(BUILD)/libstallmesh.a $(LDLIBS) $(CMOCKA_LIBS)

$(SAN_BUILD)/obj/%.o: src/%.c $(wildcard include/stallmesh/*.h src/*.h) | $(SAN_BUILD)/obj
	$(CC) $(ALL_CFLAGS) $(SAN_CFLAGS) -c $< -o $@
$(SAN_BUILD)/obj/gen_assets.o: $(GEN_ASSETS) src/assets.h | $(SAN_BUILD)/obj
	$(CC) $(ALL_CFLAGS) $(SAN_CFLAGS) -c $< -o $@
$(SAN_BUILD)/libstallmesh.a: $(SAN_LIB_OBJS)
	ar rcs $@ $^
$(SAN_BUILD)/tests/%: tests/unit/%.c $(TEST_SUPPORT) $(SAN_BUILD)/libstallmesh.a | $(SAN_BUILD)/tests
	$(CC) $(ALL_CFLAGS) $(SAN_CFLAGS) $(CMOCKA_CFLAGS) -Itests/unit -Itests/unit/support -o $@ $< $(TEST_SUPPORT) $(SAN_BUILD)/libstallmesh.a $(LDLIBS) $(CMOCKA_LIBS)

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libstallmesh.a | $(BUILD)/bench
	$(CC) $(ALL_CFLAGS) -Itests/unit -Itests/unit/support -o $@ $< $(TEST_SUPPORT) $(BUILD)/libstallmesh.a $(LDLIBS)

# The deterministic simulator (sim/, README "Simulator"): the library's
# protocol and state code, many nodes in one process, one seed a run.
SIM_SRCS := $(wildcard sim/*.c) tests/unit/support/mpw.c
SIM_HDRS := $(wildcard sim/*.h)
# The modules the simulator runs: what a selftest build plants bugs in.
SIM_LIB_SRCS := $(addprefix src/,codec.c entry.c error.c gossip.c identity.c integrity.c \
                ledger.c ledger_view.c logger.c state.c store.c text.c report.c tz.c policy.c reserve.c \
                metrics.c drop.c state_drop.c tally.c)
SIM_CFLAGS := $(ALL_CFLAGS) -Isim -Itests/unit
SIM_SEEDS_CHECK ?= 1..240
SEEDS ?= 2000
$(BUILD)/stallmesh-sim: $(SIM_SRCS) $(SIM_HDRS) $(BUILD)/libstallmesh.a
	$(CC) $(SIM_CFLAGS) -o $@ $(SIM_SRCS) $(BUILD)/libstallmesh.a $(LDLIBS)

# Planted bugs (sim-selftest): the same modules compiled with SM_SIM_BUG=n
# into build/simbug-n/; production builds never define it.
#   1 skip the units check (state.c)     2 apply a duplicate twice (ledger.c)
#   3 ignore a signature (ledger.c)      4 drop relays (gossip.c)
#   5 count a return twice (report.c)   6 serve a damaged entry (gossip.c)
#   7 forward a hold twice (policy.c)     9 a sold hold stays open (state.c)
#  10 sell before a drop starts (state.c)  12 a raffle entry asked of every peer (gossip.c)
#  11 skip a first-come drop's caps (policy.c)  13 skip a shopper's hold limits (policy.c)
#  14 an own-log WANT not hedged (gossip.c)  15 a deleted record stays in the digest's sum (store.c)
#  16 a stock record's change left out of the change log (store.c)
#  17 a kept drop walk skips an entry (drop.c)
SIM_BUGS := 1 2 3 4 5 6 7 9 10 11 12 13 14 15 16 17
# Only the modules that plant bug n (those naming it in an SM_SIM_BUG test)
# are compiled again; the linker takes the rest from the clean library, whose
# members for those modules it then never needs.
define SIM_BUG_RULES
$(BUILD)/simbug-$(1)/obj/%.o: src/%.c $(wildcard include/stallmesh/*.h src/*.h)
	@mkdir -p $$(dir $$@)
	$(CC) $(ALL_CFLAGS) -DSM_SIM_BUG=$(1) -c $$< -o $$@
SIM_BUG_OBJS_$(1) := $$(patsubst src/%.c,$(BUILD)/simbug-$(1)/obj/%.o,$$(shell grep -lE 'SM_SIM_BUG [!=]= $(1)\b' $(SIM_LIB_SRCS)))
$(BUILD)/simbug-$(1)/stallmesh-sim: $(SIM_SRCS) $(SIM_HDRS) $$(SIM_BUG_OBJS_$(1)) $(BUILD)/libstallmesh.a
	$(CC) $(SIM_CFLAGS) -DSM_SIM_BUG=$(1) -o $$@ $(SIM_SRCS) $$(SIM_BUG_OBJS_$(1)) $(BUILD)/libstallmesh.a $(LDLIBS)
endef
$(foreach b,$(SIM_BUGS),$(eval $(call SIM_BUG_RULES,$(b))))

# make sim SEEDS=N: seeds 1..N (two processes, one a core); a soak.
sim: $(BUILD)/stallmesh-sim
	@sh sim/run.sh $(BUILD)/stallmesh-sim 1..$(SEEDS)
# The bounded range make test runs.
sim-check: $(BUILD)/stallmesh-sim
	@sh sim/run.sh $(BUILD)/stallmesh-sim $(SIM_SEEDS_CHECK)
# Each planted bug must be caught by the checkers.
sim-selftest: $(BUILD)/stallmesh-sim $(foreach b,$(SIM_BUGS),$(BUILD)/simbug-$(b)/stallmesh-sim)
	@sh sim/selftest.sh $(BUILD)

# Test tools (websocket probe and feed): programs of their own, no library.
# libev (epoll, for the probe's thousands of sockets) comes with
# libwebsockets-dev on Debian and ships no pkg-config file.
$(BUILD)/tools/%: tests/tools/%.c | $(BUILD)/tools
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS) -lev
tools: $(TOOLS)

$(BUILD)/obj $(BUILD)/gen $(BUILD)/tests $(BUILD)/bench $(BUILD)/tools $(SAN_BUILD)/obj $(SAN_BUILD)/tests:
	mkdir -p $@

# Each unit test binary runs on its own; a failure stops the run.
unit: $(TESTS)
	@set -e; for t in $(TESTS); do echo "== $$t"; $$t; done

unit-san: $(SAN_TESTS)
	@set -e; for t in $(SAN_TESTS); do echo "== $$t (asan+ubsan)"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; done

# fill_store writes the big log test_full_disk's mesh part fetches.
integration: all tools $(BUILD)/bench/fill_store
	@set -e; for t in $(sort $(wildcard tests/integration/test_*.sh)); do echo "== $$t"; bash $$t $(BUILD)/stallmesh $(BUILD)/tools/wsprobe; done

# Installs chromium, node and npm (apt) and playwright-core (npm ci) if missing.
browser: deps
	@$(MAKE) --no-print-directory all
	@sh tests/browser/run.sh

# Fault runs on real processes: five nodes, a sale storm, kills, cut links
# (network namespaces when root), then the promises checked.  `faults` is
# the short run in `make test`; `soak` runs for SOAK_SECONDS.
SOAK_SECONDS ?= 600
faults: all
	@bash tests/faults/fault_run.sh --seconds 30 $(BUILD)/stallmesh
soak: all
	@bash tests/faults/fault_run.sh --seconds $(SOAK_SECONDS) $(BUILD)/stallmesh

# What the suites run is built first, on every core (JOBS); then the suites
# run one after another, each line saying how long it took.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
TEST_SUITES := unit unit-san integration browser faults sim-check sim-selftest test-arm64
test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all tools $(TESTS) $(SAN_TESTS) $(BUILD)/bench/fill_store \
	  $(BUILD)/stallmesh-sim $(foreach b,$(SIM_BUGS),$(BUILD)/simbug-$(b)/stallmesh-sim)
	@set -e; t0=$$(date +%s); for s in $(TEST_SUITES); do s0=$$(date +%s); \
	  $(MAKE) --no-print-directory $$s; \
	  echo "make test: $$s passed in $$(( $$(date +%s) - s0 )) s"; done; \
	  echo "make test: all suites passed ($$(( $$(date +%s) - t0 )) s after the build)"

# The library's benchmarks, then a real node on loopback (bench_node.sh),
# then the mesh (bench_mesh.sh: propagation, catch-up, wire bytes, idle
# cost; tests/bench/fill_store.c writes its big log and is no benchmark),
# then a livestream set-up (bench_mirror.sh: nginx in front of a mirror).
bench: deps
	@sh deploy/deps.sh bench
	@$(MAKE) --no-print-directory all tools $(BENCHES) $(BUILD)/bench/fill_store
	@set -e; for b in $(BENCHES); do $$b; echo; done
	@sh tests/bench/bench_node.sh $(BUILD)
	@echo
	@sh tests/bench/bench_https.sh $(BUILD)
	@echo
	@bash tests/bench/bench_mesh.sh $(BUILD)
	@echo
	@bash tests/bench/bench_drop_rush.sh $(BUILD)
	@echo
	@bash tests/bench/bench_mirror.sh $(BUILD)

# One target a decoder that reads bytes from outside: fuzz_entry (entries,
# token bodies; seeds in tests/fuzz/corpus) and fuzz_wire (mesh messages;
# seeds in tests/fuzz/corpus_wire).
FUZZ_CC ?= clang
FUZZ_TARGETS := $(BUILD)/fuzz_entry $(BUILD)/fuzz_wire
fuzz: $(FUZZ_TARGETS)
	@echo "run: mkdir -p $(BUILD)/fuzz-corpus && $(BUILD)/fuzz_entry $(BUILD)/fuzz-corpus tests/fuzz/corpus -max_total_time=60"
	@echo "run: mkdir -p $(BUILD)/fuzz-corpus-wire && $(BUILD)/fuzz_wire $(BUILD)/fuzz-corpus-wire tests/fuzz/corpus_wire -max_total_time=60"
$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRCS) $(GEN_ASSETS) $(wildcard include/stallmesh/*.h src/*.h) | $(BUILD)/obj
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc $(PKG_CFLAGS) \
	  -o $@ $< $(LIB_SRCS) $(GEN_ASSETS) $(LDLIBS)

# arm64 (a Raspberry Pi 3/4/5 or Zero 2 W on 64-bit Raspberry Pi OS or
# Debian): Debian's cross compiler and the :arm64 development packages
# (multiarch), installed by `deploy/deps.sh arm64`; pkg-config reads the
# arm64 .pc files.  libwebsockets-dev cannot be co-installed for two
# architectures on Debian 12, and its headers differ only in the plugin
# directory (lws_config.h), which stallmesh does not use: the build takes
# the native headers and a .pc written here that links the arm64 library.
# The tests run under qemu-aarch64-static with / as the library root (the
# arm64 libraries live in /usr/lib/aarch64-linux-gnu), no binfmt needed.
ARM64_BUILD := build-arm64
ARM64_PC    := $(ARM64_BUILD)/pkgconfig
ARM64_MAKE  := $(MAKE) --no-print-directory BUILD=$(ARM64_BUILD) CC=aarch64-linux-gnu-gcc \
               PKG_CONFIG="env PKG_CONFIG_LIBDIR=$(CURDIR)/$(ARM64_PC):/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config"
QEMU_ARM64  ?= qemu-aarch64-static -L /
# Under qemu every instruction is emulated: every unit test but three,
# the two long randomised ones (test_property 40 s and test_gossip 46 s
# under qemu, against about 10 s for most others), which check logic that
# does not depend on the architecture, and test_seal (eleven Argon2id
# derivations of 64 MiB: 50 s), whose sealing the smoke test does once
# (identity export, then import); all three run natively in `make unit`.
ARM64_UNITS := $(filter-out test_property test_gossip test_seal,$(TEST_SRCS:tests/unit/%.c=%))
$(ARM64_PC)/libwebsockets.pc:
	mkdir -p $(ARM64_PC)
	printf 'Name: libwebsockets\nDescription: libwebsockets17:arm64 with the native headers\nVersion: 4.1.6\nRequires: libcap\nLibs: -l:libwebsockets.so.17\nCflags:\n' > $@
cross-arm64:
	@sh deploy/deps.sh arm64
	@$(MAKE) --no-print-directory $(ARM64_PC)/libwebsockets.pc
	+@$(ARM64_MAKE) -j$(JOBS) $(ARM64_BUILD)/stallmesh
	@file $(ARM64_BUILD)/stallmesh | grep -q 'ARM aarch64' && echo "cross-arm64: $(ARM64_BUILD)/stallmesh is an arm64 binary"
# deploy/install.sh in a booted Debian 12 container (systemd-nspawn; root;
# the first run downloads the system).  Not part of make test.
test-systemd:
	@bash tests/deploy/systemd_container.sh

test-arm64: cross-arm64
	+@$(ARM64_MAKE) -j$(JOBS) $(ARM64_UNITS:%=$(ARM64_BUILD)/tests/%)
	@set -e; for t in $(ARM64_UNITS); do echo "== $(ARM64_BUILD)/tests/$$t (qemu arm64)"; \
	  $(QEMU_ARM64) $(ARM64_BUILD)/tests/$$t; done
	@bash tests/integration/smoke.sh $(ARM64_BUILD)/stallmesh $(QEMU_ARM64)

run: deps all
	@sh deploy/run.sh $(BUILD)/stallmesh

demo: deps
	@$(MAKE) --no-print-directory all
	@bash deploy/demo.sh $(BUILD)/stallmesh

# make install / uninstall (PREFIX, DESTDIR and the directories below):
# the binary, the library and its headers, the systemd unit (ExecStart
# names BINDIR and SYSCONFDIR), the man page stallmesh(1), the example
# config (in DOCDIR, and as SYSCONFDIR/stallmesh/stallmesh.conf unless one
# is there: a config is never overwritten).  uninstall removes those files,
# the config only if it is still the example unchanged.
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/stallmesh
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
INSTALL_HEADERS := $(notdir $(wildcard include/stallmesh/*.h))

$(BUILD)/stallmesh.service: deploy/stallmesh.service | $(BUILD)/obj
	sed -e 's|/usr/local/bin/stallmesh|$(BINDIR)/stallmesh|' \
	    -e 's|/etc/stallmesh/|$(SYSCONFDIR)/stallmesh/|g' $< > $@

install: all $(BUILD)/stallmesh.service
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/stallmesh \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/stallmesh
	install -m 0755 $(BUILD)/stallmesh $(DESTDIR)$(BINDIR)/stallmesh
	install -m 0644 $(BUILD)/libstallmesh.a $(DESTDIR)$(LIBDIR)/libstallmesh.a
	install -m 0644 include/stallmesh/*.h $(DESTDIR)$(INCLUDEDIR)/stallmesh/
	install -m 0644 $(BUILD)/stallmesh.service $(DESTDIR)$(UNITDIR)/stallmesh.service
	install -m 0644 deploy/stallmesh.1 $(DESTDIR)$(MANDIR)/man1/stallmesh.1
	install -m 0644 deploy/stallmesh.conf.example $(DESTDIR)$(DOCDIR)/stallmesh.conf.example
	[ -e $(DESTDIR)$(SYSCONFDIR)/stallmesh/stallmesh.conf ] || \
	    install -m 0644 deploy/stallmesh.conf.example $(DESTDIR)$(SYSCONFDIR)/stallmesh/stallmesh.conf

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/stallmesh $(DESTDIR)$(LIBDIR)/libstallmesh.a \
	    $(addprefix $(DESTDIR)$(INCLUDEDIR)/stallmesh/,$(INSTALL_HEADERS)) \
	    $(DESTDIR)$(UNITDIR)/stallmesh.service $(DESTDIR)$(MANDIR)/man1/stallmesh.1 \
	    $(DESTDIR)$(DOCDIR)/stallmesh.conf.example
	if cmp -s deploy/stallmesh.conf.example $(DESTDIR)$(SYSCONFDIR)/stallmesh/stallmesh.conf; then \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/stallmesh/stallmesh.conf; fi
	-rmdir $(DESTDIR)$(INCLUDEDIR)/stallmesh $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/stallmesh 2>/dev/null

clean:
	rm -rf $(BUILD) $(ARM64_BUILD)
