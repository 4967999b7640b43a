# Baetyl-C — one entry point (DESIGN.md §2).
#
#   make                  release build of the SDK, every module and the examples, under build/
#   make test             sanitizer build (ASan+UBSan) under build/san, unit tests, short fuzz
#                         runs, then the integration tests (pytest) against those binaries
#   make fuzz             every fuzz target for FUZZ_TIME seconds (default 60)
#   make bench            benchmarks side by side with mosquitto
#   make soak [SOAK_TIME=600]   the whole system under load and chaos (release build)
#   make install PREFIX=/usr/local MODE=native|docker [EXAMPLE=native-tls|…]
#   make uninstall PREFIX=…, make clean, make run
#   make format / make format-check   clang-format (.clang-format) applied / verified
#
# Objects never land in the source tree. BUILD picks the output directory, SAN=1 adds the
# sanitizers, so several builds can live side by side.

# ---- platforms: PLATFORM=linux/arm64 builds with Debian's cross toolchain and multiarch
# libraries into build/linux-arm64 (scripts/deps.sh --platforms all installs them); the
# native build stays in build/. PLATFORMS=all (or a comma list) builds each in turn.
ALL_PLATFORMS := linux/amd64 linux/arm64 linux/arm/v7
PLATFORM  ?=
PLATFORMS ?=
triplet_linux/amd64  := x86_64-linux-gnu
triplet_linux/arm64  := aarch64-linux-gnu
triplet_linux/arm/v7 := arm-linux-gnueabihf
debarch_linux/amd64  := amd64
debarch_linux/arm64  := arm64
debarch_linux/arm/v7 := armhf
UNAME_M := $(shell uname -m)
NATIVE_PLATFORM := $(if $(filter x86_64,$(UNAME_M)),linux/amd64,$(if $(filter aarch64,$(UNAME_M)),\
                     linux/arm64,$(if $(filter armv7% armv8l,$(UNAME_M)),linux/arm/v7,linux/$(UNAME_M))))
ifneq ($(PLATFORM),)
  TRIPLET := $(triplet_$(PLATFORM))
  ifeq ($(TRIPLET),)
    $(error PLATFORM=$(PLATFORM) is not one of: $(ALL_PLATFORMS))
  endif
  BUILD ?= build/$(subst /,-,$(subst arm/v7,armv7,$(PLATFORM)))
  CC    := $(TRIPLET)-gcc
  CXX   := $(TRIPLET)-g++
  # pkg-config answers for the target's libraries, not the build machine's ($(shell) of
  # make 4.3 does not see exported variables, hence the prefix).
  PKG_CONFIG := PKG_CONFIG_LIBDIR=/usr/lib/$(TRIPLET)/pkgconfig:/usr/share/pkgconfig pkg-config
  ifeq ($(shell command -v $(CC) 2>/dev/null),)
    $(error $(CC) not found: run scripts/deps.sh --platforms all)
  endif
endif
PKG_CONFIG ?= pkg-config
BT_PLATFORM := $(or $(PLATFORM),$(NATIVE_PLATFORM))

# PLATFORMS: run the goals once per platform (each a make of its own), nothing else here.
ifneq ($(PLATFORMS),)
ifeq ($(PLATFORM),)
comma := ,
PLAT_LIST := $(if $(filter all,$(PLATFORMS)),$(ALL_PLATFORMS),$(subst $(comma), ,$(PLATFORMS)))
PLAT_GOALS := $(or $(MAKECMDGOALS),all)
.PHONY: $(PLAT_GOALS)
$(PLAT_GOALS):
	@for p in $(PLAT_LIST); do echo "== make $@ PLATFORM=$$p"; \
	  $(MAKE) --no-print-directory PLATFORMS= PLATFORM=$$p $@ || exit 1; done
PLATFORM_DISPATCH := 1
endif
endif
ifndef PLATFORM_DISPATCH

BUILD   ?= build
# One spelling per build dir (relative inside the tree): the dependency files name their
# targets as BUILD was spelt, and a `make BUILD=$(abspath build)` (make bench's footprint,
# the soak) left ones that a plain `make` never matched, so header changes went unseen.
override BUILD := $(patsubst $(CURDIR)/%,%,$(abspath $(BUILD)))
V       ?= 0
Q        = $(if $(filter 1,$(V)),,@)
SAN     ?= 0
CC      ?= gcc
PREFIX  ?= /usr/local
MODE    ?= native
EXAMPLE ?= $(MODE)
FUZZ_TIME ?= 60
PYTHON  ?= /usr/bin/python3
PYTEST_ARGS ?=
# Integration tests run on this many pytest-xdist workers (1: one after the other). Most of
# their time is spent waiting on the programs they drive, so two workers nearly halve it even
# on two cores; a file's tests share a worker, and so do all the Docker tests (one engine).
TEST_JOBS ?= 2

VERSION  := $(shell git describe --tags --exact-match 2>/dev/null || echo git-$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

PKGS := yaml-0.1 jansson openssl lmdb libarchive libprotobuf-c libnghttp2
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS)) -lpthread -lm

WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2
OPT     ?= -O2 -g
# _FILE_OFFSET_BITS=64: large files (the hub's store) and readdir on 32-bit ARM as on 64-bit.
CFLAGS  := $(OPT) -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(WARN) -Isdk/include -I$(BUILD)/gen $(PKG_CFLAGS) -MMD -MP
LDFLAGS ?=

ifeq ($(SAN),1)
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  CFLAGS   += $(SANFLAGS) -O1
  LDFLAGS  += $(SANFLAGS)
endif

# ---- generated code (protobuf-c for proto/*.proto) ------------------------------------
PROTOS   := $(wildcard proto/*.proto)
GEN_SRCS := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_HDRS := $(GEN_SRCS:.c=.h)

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

# ---- the version: only sdk/src/version.c sees it; the stamp changes when the version does --
VERSION_STAMP := $(BUILD)/gen/version.stamp
$(shell mkdir -p $(BUILD)/gen; echo '$(VERSION) $(REVISION)' | cmp -s - $(VERSION_STAMP) || \
        echo '$(VERSION) $(REVISION)' > $(VERSION_STAMP))
$(BUILD)/obj/sdk/src/version.o: $(VERSION_STAMP)
$(BUILD)/obj/sdk/src/version.o: CFLAGS += -DBT_VERSION='"$(VERSION)"' -DBT_REVISION='"$(REVISION)"' \
                                          -DBT_PLATFORM='"$(BT_PLATFORM)"'

# ---- the SDK -------------------------------------------------------------------------
SDK_SRCS := $(wildcard sdk/src/*.c)
SDK_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(SDK_SRCS)) \
            $(patsubst $(BUILD)/gen/%.c,$(BUILD)/obj/gen/%.o,$(GEN_SRCS))
SDK_LIB  := $(BUILD)/lib/libbaetyl-sdk.a

$(SDK_LIB): $(SDK_OBJS)
	@mkdir -p $(dir $@)
	@echo '  AR    $@'
	$(Q)rm -f $@ && ar rcs $@ $^

# Objects are rebuilt when the compiler or its flags change (another OPT, SAN, PLATFORM…).
FLAGS_STAMP := $(BUILD)/gen/flags.stamp
$(shell echo '$(CC) $(CFLAGS)' | cmp -s - $(FLAGS_STAMP) || echo '$(CC) $(CFLAGS)' > $(FLAGS_STAMP))

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP) | $(GEN_HDRS)
	@mkdir -p $(dir $@)
	@echo '  CC    $<'
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo '  CC    $<'
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# ---- modules: every top-level directory with a main.c is one executable ----------------
# master/ builds `baetyl`; any other dir X builds `baetyl-X`.
MODULE_DIRS := $(patsubst %/main.c,%,$(wildcard */main.c))
# video-infer needs OpenCV for the target: Debian 12's OpenCV packages of another
# architecture cannot be installed beside the native ones (gdal conflicts), so a cross build
# without them leaves video-infer out (README "Platforms").
OPENCV_LIBDIR := $(if $(TRIPLET),/usr/lib/$(TRIPLET),$(dir $(firstword $(wildcard /usr/lib/*/libopencv_dnn.so))))
ifeq ($(wildcard $(OPENCV_LIBDIR)/libopencv_dnn.so),)
  MODULE_DIRS := $(filter-out video-infer,$(MODULE_DIRS))
endif
bin_name     = $(if $(filter master,$(1)),baetyl,baetyl-$(1))
MODULE_BINS := $(foreach d,$(MODULE_DIRS),$(BUILD)/bin/$(call bin_name,$(d)))

# Each executable links only the libraries it uses (issue #18: every shared library mapped
# costs memory in every process that maps it): the SDK's own (YAML, JSON) plus the module's.
# OpenSSL is loaded when first used (baetyl/ossl.h: a TLS address or listener), so only the
# modules calling it directly link it (gRPC maps it anyway). The master API, docker engine
# and cloud (HTTPS) clients are the SDK's own HTTP (baetyl/http.h): nothing links libcurl.
# A module not listed here links everything. --as-needed drops what a binary still does
# not use.
SDK_PKGS := yaml-0.1 jansson
MOD_PKGS_master            :=
MOD_PKGS_hub               := lmdb
MOD_PKGS_function-manager  := libprotobuf-c libnghttp2 openssl
MOD_PKGS_function-sql      := libprotobuf-c libnghttp2
MOD_PKGS_video-infer       := libprotobuf-c libnghttp2
MOD_PKGS_agent             := openssl # libarchive: dlopen()ed (agent/archive_lib.h)
MOD_PKGS_timer             :=
MOD_PKGS_remote-mqtt       :=
mod_pkgs = $(if $(filter undefined,$(origin MOD_PKGS_$(1))),$(PKGS),$(SDK_PKGS) $(MOD_PKGS_$(1)))
LINK_AS_NEEDED := -Wl,--as-needed

define module_rule
MOD_LIBS_$(1) := $(shell $(PKG_CONFIG) --libs $(call mod_pkgs,$(1))) -lpthread -lm
$(BUILD)/bin/$(call bin_name,$(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(1)/*.c)) $(SDK_LIB)
	@mkdir -p $$(dir $$@)
	@echo '  LD    $$@'
	$$(Q)$$(CC) $$(LDFLAGS) $$(LINK_AS_NEEDED) -o $$@ $$(filter %.o,$$^) $(SDK_LIB) \
	  $$(MOD_LIBS_$(1)) $$(MOD_EXTRA_LIBS_$(1))
endef
$(foreach d,$(MODULE_DIRS),$(eval $(call module_rule,$(d))))
# The status page is embedded with .incbin, which the compiler's dependency files miss.
$(BUILD)/obj/master/status_page.o: master/status_page.html

# ---- C++ parts of modules: video-infer/cv.cpp on OpenCV 4 (no C API for videoio/dnn) -----
# Debian's split OpenCV packages ship no opencv4.pc, hence the fixed paths.
OPENCV_CFLAGS := -isystem /usr/include/opencv4
OPENCV_LIBS   := -lopencv_dnn -lopencv_videoio -lopencv_imgcodecs -lopencv_imgproc -lopencv_core
CXXFLAGS := $(OPT) -std=gnu++17 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(WARN) -Isdk/include $(OPENCV_CFLAGS) -MMD -MP
ifeq ($(SAN),1)
  CXXFLAGS += $(SANFLAGS) -O1
endif
$(BUILD)/obj/%.o: %.cpp $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo '  CXX   $<'
	$(Q)$(CXX) $(CXXFLAGS) -c -o $@ $<

VI_CXX_OBJS := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard video-infer/*.cpp))
$(BUILD)/bin/baetyl-video-infer: $(VI_CXX_OBJS)
MOD_EXTRA_LIBS_video-infer := $(OPENCV_LIBS) -lstdc++

# ---- examples written with the SDK: example/<name>/main.c -> build/bin/example-<name> ----
EXAMPLE_DIRS := $(patsubst %/main.c,%,$(wildcard example/*/main.c))
EXAMPLE_BINS := $(foreach d,$(EXAMPLE_DIRS),$(BUILD)/bin/example-$(notdir $(d)))
define example_rule
$(BUILD)/bin/example-$(notdir $(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(1)/*.c)) $(SDK_LIB)
	@mkdir -p $$(dir $$@)
	@echo '  LD    $$@'
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$(filter %.o,$$^) $(SDK_LIB) $$(PKG_LIBS)
endef
$(foreach d,$(EXAMPLE_DIRS),$(eval $(call example_rule,$(d))))

# ---- C unit tests (cmocka): test/unit/test_X.c -> build/…/test/test_X ----------------
UNIT_SRCS := $(wildcard test/unit/test_*.c)
UNIT_BINS := $(patsubst test/unit/%.c,$(BUILD)/test/%,$(UNIT_SRCS))
$(BUILD)/test/%: $(BUILD)/obj/test/unit/%.o $(SDK_LIB)
	@mkdir -p $(dir $@)
	@echo '  LD    $@'
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(SDK_LIB) $(PKG_LIBS) $(shell $(PKG_CONFIG) --libs cmocka)

# Unit tests of a module's internals: test/unit/<module>/test_X.c links that module's
# objects except main.o.
MOD_UNIT_SRCS := $(wildcard $(foreach d,$(MODULE_DIRS),test/unit/$(d)/test_*.c))
MOD_UNIT_BINS := $(patsubst test/unit/%.c,$(BUILD)/test/%,$(MOD_UNIT_SRCS))
UNIT_BINS     += $(MOD_UNIT_BINS)
mod_objs       = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out $(1)/main.c,$(wildcard $(1)/*.c)))
define mod_unit_rule
$(BUILD)/test/$(1)/%: $(BUILD)/obj/test/unit/$(1)/%.o $(call mod_objs,$(1)) $(SDK_LIB)
	@mkdir -p $$(dir $$@)
	@echo '  LD    $$@'
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$(filter %.o,$$^) $(SDK_LIB) $$(PKG_LIBS) $$(shell $(PKG_CONFIG) --libs cmocka)
endef
$(foreach d,$(MODULE_DIRS),$(eval $(call mod_unit_rule,$(d))))

# Test helpers written in C (peers, tools the integration tests drive): test/tools/X.c
TOOL_SRCS := $(wildcard test/tools/*.c)
TOOL_BINS := $(patsubst test/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))
$(BUILD)/tools/%: $(BUILD)/obj/test/tools/%.o $(SDK_LIB)
	@mkdir -p $(dir $@)
	@echo '  LD    $@'
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(SDK_LIB) $(PKG_LIBS) $(if $(wildcard /usr/include/MQTTAsync.h),-lpaho-mqtt3as)

# cutfs (the power-cut filesystem of test/durability) is a FUSE program: libfuse3.
$(BUILD)/obj/test/tools/cutfs.o: CFLAGS += $(shell $(PKG_CONFIG) --cflags fuse3)
$(BUILD)/tools/cutfs: PKG_LIBS += $(shell $(PKG_CONFIG) --libs fuse3)

.PHONY: all image-bins sdk modules examples unit tools test test-platforms test-packages test-durability unit-test integration-test fuzz fuzz-smoke \
        bench soak image install uninstall clean rebuild run format format-check deb dist
.DEFAULT_GOAL := all
all: $(SDK_LIB) $(MODULE_BINS) $(EXAMPLE_BINS)
sdk: $(SDK_LIB)
modules: $(MODULE_BINS)
examples: $(EXAMPLE_BINS)
unit: $(UNIT_BINS)
tools: $(TOOL_BINS)

# ---- tests ----------------------------------------------------------------------------
SAN_BUILD := build/san
export ASAN_OPTIONS  ?= detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

test:
	$(MAKE) --no-print-directory format-check
	$(MAKE) --no-print-directory SAN=1 BUILD=$(SAN_BUILD) all unit tools
	$(MAKE) --no-print-directory SAN=1 BUILD=$(SAN_BUILD) unit-test
	$(MAKE) --no-print-directory fuzz-smoke
	$(MAKE) --no-print-directory SAN=1 BUILD=$(SAN_BUILD) integration-test
	BAETYL_BUILD=$(abspath $(SAN_BUILD)) BAETYL_SRC=$(CURDIR) SOAK_TIME=20 $(PYTHON) test/soak/soak.py
	$(MAKE) --no-print-directory SAN=1 BUILD=$(SAN_BUILD) test-durability CUTS=50
	$(MAKE) --no-print-directory SAN=1 BUILD=$(SAN_BUILD) test-swarm \
	  SWARM_TESTS=test/swarm/test_swarm_harness.py
	$(MAKE) --no-print-directory test-platforms
	$(MAKE) --no-print-directory test-packages

# The Debian packages of this machine's platform: lintian, then installed into a fresh
# debootstrap'ed Debian 12 (cached under build/debootstrap), run, removed, purged.
test-packages: deb dist
	BAETYL_SRC=$(CURDIR) BAETYL_DIST=$(abspath $(DIST_DIR)) $(PYTHON) -m pytest -q -p no:cacheprovider test/packages

# Docker Swarm in network namespaces (test/swarm/; skipped without root or netns). make test
# runs the harness's own tests (under a minute); the whole suite builds the images too.
SWARM_TESTS ?= test/swarm
test-swarm: all
	BAETYL_BUILD=$(abspath $(BUILD)) BAETYL_SRC=$(CURDIR) $(PYTHON) -m pytest -q -p no:cacheprovider \
	  $(SWARM_TESTS)

# Power cuts under QoS 1 load (test/durability): CUTS cuts with storage.sync true (nothing
# acknowledged may be lost) and a fifth of them with sync false (losses must show).
CUTS ?= 50
test-durability: tools
	CUTS=$(CUTS) BAETYL_BUILD=$(abspath $(BUILD)) BAETYL_SRC=$(CURDIR) $(PYTHON) -m pytest -q -s \
	  -p no:cacheprovider test/durability

# The other platforms under emulation (qemu-user through binfmt_misc): each one's cross build,
# its C unit tests, and the main example end to end (test/platform/). EMULATED picks them.
EMULATED ?= linux/arm64 linux/arm/v7
test-platforms:
	@for p in $(EMULATED); do \
	  d=build/$$(echo $$p | sed 's|arm/v7|armv7|; s|/|-|'); \
	  echo "== $$p: cross build ($$d)"; \
	  $(MAKE) --no-print-directory PLATFORM=$$p all unit >/dev/null || exit 1; \
	  echo "== $$p: unit tests under emulation"; \
	  $(MAKE) --no-print-directory PLATFORM=$$p unit-test > $$d/unit-test.log 2>&1; rc=$$?; \
	  grep -E '^(unit:|FAILED)' $$d/unit-test.log; \
	  [ $$rc -eq 0 ] || { tail -n 60 $$d/unit-test.log; exit 1; }; \
	  echo "== $$p: main example end to end"; \
	  BAETYL_PLATFORM=$$p BAETYL_BUILD=$(CURDIR)/$$d BAETYL_SRC=$(CURDIR) $(PYTHON) -m pytest -q \
	    -p no:cacheprovider test/platform || exit 1; \
	done

# Runs every unit test binary, then prints one closing line CI can read.
unit-test: $(UNIT_BINS)
	@pass=0; fail=0; for t in $(UNIT_BINS); do \
	  echo "== $$t"; if $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; echo "unit: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

XDIST = $(if $(filter-out 1,$(TEST_JOBS)),$(if $(shell $(PYTHON) -c 'import xdist' 2>/dev/null \
  && echo y),-n $(TEST_JOBS) --dist loadgroup))
integration-test:
	BAETYL_BUILD=$(abspath $(BUILD)) BAETYL_SRC=$(CURDIR) $(PYTHON) -m pytest -q -p no:cacheprovider \
	  $(XDIST) test/integration $(PYTEST_ARGS)

# ---- fuzzing (libFuzzer, clang) ---------------------------------------------------------
FUZZ_SRCS := $(wildcard test/fuzz/fuzz_*.c)
FUZZ_BUILD := build/fuzz
FUZZ_BINS := $(patsubst test/fuzz/%.c,$(FUZZ_BUILD)/fuzz/%,$(FUZZ_SRCS))
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all

fuzz-build:
	$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD) \
	  OPT="-O1 -g $(FUZZ_FLAGS)" fuzz-bins
# Fuzz targets of a module's internals: test/fuzz/<module>/fuzz_X.c links that module's
# objects except main.o (built with the fuzz flags).
FUZZ_MOD_SRCS := $(wildcard $(foreach d,$(MODULE_DIRS),test/fuzz/$(d)/fuzz_*.c))
FUZZ_BINS     += $(patsubst test/fuzz/%.c,$(FUZZ_BUILD)/fuzz/%,$(FUZZ_MOD_SRCS))
define mod_fuzz_rule
$(FUZZ_BUILD)/fuzz/$(1)/%: $(FUZZ_BUILD)/obj/test/fuzz/$(1)/%.o $(call mod_objs,$(1)) $(SDK_LIB)
	@mkdir -p $$(dir $$@)
	@echo '  LD    $$@'
	$$(Q)$$(CC) -fsanitize=fuzzer,address,undefined -o $$@ $$(filter %.o,$$^) $(SDK_LIB) $$(PKG_LIBS)
endef
$(foreach d,$(MODULE_DIRS),$(eval $(call mod_fuzz_rule,$(d))))
fuzz-bins: $(FUZZ_BINS)
$(FUZZ_BUILD)/fuzz/%: $(FUZZ_BUILD)/obj/test/fuzz/%.o $(SDK_LIB)
	@mkdir -p $(dir $@)
	@echo '  LD    $@'
	$(Q)$(CC) -fsanitize=fuzzer,address,undefined -o $@ $< $(SDK_LIB) $(PKG_LIBS)

# make fuzz: FUZZ_TIME seconds per target; corpora kept under build/fuzz/corpus.
fuzz: fuzz-build
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	  seeds=""; [ -d test/fuzz/corpus/$$n ] && seeds=test/fuzz/corpus/$$n; \
	  echo "== $$n ($(FUZZ_TIME)s)"; \
	  mkdir -p $(FUZZ_BUILD)/artifacts $(FUZZ_BUILD)/logs; log=$(FUZZ_BUILD)/logs/$$n.log; \
	  if ! $$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/ \
	       $(FUZZ_BUILD)/corpus/$$n $$seeds > $$log 2>&1; then \
	    tail -n 80 $$log; echo "FAILED: $$n (full log: $$log)"; exit 1; fi; \
	  grep -E '^stat::(number_of_executed_units|new_units_added)' $$log | tr '\n' ' '; echo; \
	done

# Short bounded run for CI.
fuzz-smoke:
	$(MAKE) --no-print-directory fuzz FUZZ_TIME=$(or $(FUZZ_SMOKE_TIME),10)

# ---- style: .clang-format over every C/C++ file git tracks ------------------------------
FORMAT_FILES = $(shell git ls-files '*.c' '*.h' '*.cpp' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)
# Lists the files that differ from the style and fails when there is one.
format-check:
	@bad=0; for f in $(FORMAT_FILES); do \
	  if ! clang-format --dry-run -Werror $$f >/dev/null 2>&1; then echo "format: $$f"; bad=1; fi; \
	done; if [ $$bad -ne 0 ]; then echo "format-check: run 'make format'"; exit 1; fi; \
	echo "format-check: $(words $(FORMAT_FILES)) files OK"

# ---- soak: load + chaos (kill -9 of the hub and of runtimes, SIGSTOP) for SOAK_TIME s ----
SOAK_TIME ?= 600
soak: all tools
	BAETYL_BUILD=$(abspath $(BUILD)) BAETYL_SRC=$(CURDIR) SOAK_TIME=$(SOAK_TIME) $(PYTHON) test/soak/soak.py
	$(MAKE) --no-print-directory test-durability CUTS=$(or $(SOAK_CUTS),500)
	BAETYL_REMOTE_OUTAGE_S=600 BAETYL_BUILD=$(abspath $(BUILD)) BAETYL_SRC=$(CURDIR) $(PYTHON) -m pytest \
	  -q -p no:cacheprovider test/integration/test_remote_mqtt_durability.py -k long_outage

# ---- benchmarks ---------------------------------------------------------------------
# Each suite prints its own table; all use the release build.
bench: all tools
	BAETYL_BUILD=$(abspath $(BUILD)) $(PYTHON) test/bench/run.py
	BAETYL_BUILD=$(abspath $(BUILD)) $(PYTHON) test/bench/client_bench.py
	BAETYL_BUILD=$(abspath $(BUILD)) $(PYTHON) test/bench/bridge_bench.py
	BAETYL_BUILD=$(abspath $(BUILD)) $(PYTHON) test/bench/outage_bench.py
	BAETYL_BUILD=$(abspath $(BUILD)) $(PYTHON) test/bench/function_bench.py
	$(PYTHON) test/bench/master_bench.py $(BUILD)/bin/baetyl 10
	$(PYTHON) test/bench/footprint.py --build $(abspath $(BUILD)) --seconds 20

# ---- the programs of the docker images: static (issue #14, the hub's image <= 5 MB) --------
# An image is FROM scratch, so whatever its program loads is in it: dynamic, that is libc,
# the loader, libcrypto (4.7 MB) and libssl. Linked statically only what the program calls
# is kept, and its unwind tables are dropped (C code that neither cancels nor exits threads
# nor walks stacks never reads them; crtbegin's own stay, it registers them): the hub is
# 4.9 MB in all. Containers share no library page anyway (each image has its own files), and
# a static program has no relocated libcrypto (0.4 MB private dirty in each process).
# Static glibc resolves from /etc/hosts and DNS without NSS modules, which is all these ask
# (listeners' hosts, the hub's, the master API's). The native build stays dynamic: there the
# modules share one libc and libcrypto. Made by all when the target has the static libraries.
IMAGE_STATIC   := hub timer remote-mqtt
IMAGE_LD       := $(BUILD)/gen/static-no-unwind.ld
IMAGE_LD_T     := -Wl,-T,$(IMAGE_LD)
ifneq ($(wildcard $(shell $(PKG_CONFIG) --variable=libdir openssl 2>/dev/null)/libcrypto.a),)
  IMAGE_BINS += $(if $(filter 1,$(SAN)),,$(IMAGE_STATIC:%=$(BUILD)/image/baetyl-%)) # no static ASan
endif
# The toolchain's own static link script with .eh_frame discarded (empty when its text
# differs: the link then keeps the tables).
$(IMAGE_LD): $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(CC) -static -Wl,--verbose -x c /dev/null -o /dev/null 2>/dev/null | \
	  sed -n '/^=====/,/^=====/{/^=====/d;p}' | \
	  sed -e '/^ *\.eh_frame_hdr *:/d' -e '/^ *\.eh_frame *: *ONLY_IF_RW/d' \
	      -e 's|^ *\.eh_frame *: *ONLY_IF_RO.*|  .eh_frame : { KEEP (*crtbegin*.o(.eh_frame)) \
	  KEEP (*crtend*.o(.eh_frame)) }\n  /DISCARD/ : { *(.eh_frame) *(.eh_frame.*) }|' >$@.tmp
	$(Q)if grep -q DISCARD $@.tmp; then mv $@.tmp $@; else : >$@; rm -f $@.tmp; fi
# A static program cannot dlopen the target's OpenSSL: it links it, and this table of
# baetyl/ossl.h points at it (linked before the SDK, whose dlopen table is then not used).
OSSL_LINKED := $(BUILD)/obj/sdk/ossl_linked.o
$(OSSL_LINKED): sdk/src/ossl.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo '  CC    $@'
	$(Q)$(CC) $(CFLAGS) -DBT_OSSL_LINKED -c -o $@ $<
define image_rule
$(BUILD)/image/baetyl-$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(1)/*.c)) $(OSSL_LINKED) \
                            $(SDK_LIB) $(IMAGE_LD)
	@mkdir -p $$(dir $$@)
	@echo '  LD    $$@ (static)'
	$$(Q)$$(CC) $$(LDFLAGS) -static -Wl,--gc-sections -Wl,--no-eh-frame-hdr \
	  $$$$([ -s $(IMAGE_LD) ] && echo $(IMAGE_LD_T)) -o $$@ $$(filter %.o,$$^) $(SDK_LIB) \
	  $(shell $(PKG_CONFIG) --static --libs $(SDK_PKGS) openssl $(MOD_PKGS_$(1))) -lpthread -lm \
	  2>$$@.log; rc=$$$$?; \
	  grep -v -e "statically linked applications requires" -e ": in function" $$@.log >&2; \
	  rm -f $$@.log; [ $$$$rc = 0 ] && $(if $(TRIPLET),$(TRIPLET)-,)strip --strip-unneeded $$@
endef
$(foreach m,$(IMAGE_STATIC),$(eval $(call image_rule,$(m))))
all: $(IMAGE_BINS)
image-bins: $(IMAGE_BINS)

# ---- docker images (docker mode): one per module, FROM scratch, built on the local engine --
IMAGE_TAG ?= latest
# MODULES="hub agent" builds only those images.
# Another PLATFORM's images (its C modules, tagged <image>:<IMAGE_TAG>-linux-<arch>) come from
# its cross build: make image PLATFORMS=linux/amd64,linux/arm64,linux/arm/v7.
image: all
ifeq ($(BT_PLATFORM),$(NATIVE_PLATFORM))
	docker/build-images.sh -b $(BUILD) -t $(IMAGE_TAG) $(MODULES:%=baetyl-%)
else
	docker/build-platform-images.sh -p $(BT_PLATFORM) -t $(IMAGE_TAG) $(MODULES:%=baetyl-%)
endif

# ---- Debian packages and release archives of the build's platform (PLATFORMS=… for several) --
DIST_DIR ?= build/dist
deb: all
	scripts/mkdeb.sh -p $(BT_PLATFORM) -b $(BUILD) -o $(DIST_DIR) -v $(VERSION)

# baetyl-<version>-linux-<arch>.tar.gz: what `make install MODE=native` puts in a prefix
# (bin/baetyl, etc/, var/db/baetyl/<packages>, the SDK, the systemd unit), to unpack into
# /usr/local like Baetyl 1.0's release archives; every example under share/baetyl/example.
DIST_NAME = baetyl-$(VERSION)-$(subst /,-,$(subst arm/v7,armv7,$(BT_PLATFORM)))
dist: all
	@rm -rf $(BUILD)/dist-stage && mkdir -p $(BUILD)/dist-stage/$(DIST_NAME) $(DIST_DIR)
	@$(MAKE) --no-print-directory install PREFIX=$(abspath $(BUILD)/dist-stage/$(DIST_NAME)) \
	  MODE=native >/dev/null
	@mkdir -p $(BUILD)/dist-stage/$(DIST_NAME)/share/baetyl/example
	@cp -R example/. $(BUILD)/dist-stage/$(DIST_NAME)/share/baetyl/example/
	@cp README.md $(BUILD)/dist-stage/$(DIST_NAME)/share/baetyl/
	@sed -i 's|^ExecStart=.*|ExecStart=/usr/local/bin/baetyl start -w /usr/local|; s|^ExecStop=.*|ExecStop=/usr/local/bin/baetyl stop -w /usr/local|' \
	  $(BUILD)/dist-stage/$(DIST_NAME)/lib/systemd/system/baetyl.service
	@sed -i 's|^prefix=.*|prefix=/usr/local|' $(BUILD)/dist-stage/$(DIST_NAME)/lib/pkgconfig/baetyl-sdk.pc
	@find $(BUILD)/dist-stage -type f -perm -u+x -exec sh -c 'head -c4 "$$1" | grep -q ELF' _ {} \; \
	  -exec $(if $(TRIPLET),$(TRIPLET)-,)strip --strip-unneeded {} \;
	@tar -C $(BUILD)/dist-stage/$(DIST_NAME) --owner=0 --group=0 --sort=name -czf \
	  $(DIST_DIR)/$(DIST_NAME).tar.gz .
	@rm -rf $(BUILD)/dist-stage
	@echo "  TAR   $(DIST_DIR)/$(DIST_NAME).tar.gz ($$(du -k $(DIST_DIR)/$(DIST_NAME).tar.gz | cut -f1) KiB)"

# ---- install --------------------------------------------------------------------------
# native: each module's package goes to PREFIX/var/db/baetyl/baetyl-<module>/ with bin/ and
# package.yml — the layout the examples mount at lib/baetyl/<image>.
install: all
	install -d $(PREFIX)/bin
	@if [ -f $(BUILD)/bin/baetyl ]; then install -m 0755 $(BUILD)/bin/baetyl $(PREFIX)/bin/baetyl; fi
	@if [ -d example/$(EXAMPLE)/etc ]; then mkdir -p $(PREFIX)/etc && cp -R example/$(EXAMPLE)/etc/. $(PREFIX)/etc/; fi
	@if [ -d example/$(EXAMPLE)/var ]; then mkdir -p $(PREFIX)/var && cp -R example/$(EXAMPLE)/var/. $(PREFIX)/var/; fi
	@# Examples with TLS get fresh certificates at install time (no private key in git).
	@if grep -qs localhub-cert-only-for-test example/$(EXAMPLE)/var/db/baetyl/application.yml; then \
	  scripts/gen-certs.sh $(PREFIX)/var/db/baetyl/localhub-cert-only-for-test; fi
	@if [ "$(MODE)" = native ]; then \
	  for b in $(filter-out $(BUILD)/bin/baetyl,$(MODULE_BINS)); do \
	    m=$$(basename $$b); d=$$(echo $$m | sed 's/^baetyl-//'); \
	    install -d $(PREFIX)/var/db/baetyl/$$m/bin; \
	    install -m 0755 $$b $(PREFIX)/var/db/baetyl/$$m/bin/$$m; \
	    if [ -f $$d/package.yml ]; then install -m 0644 $$d/package.yml $(PREFIX)/var/db/baetyl/$$m/package.yml; \
	    else printf 'entry: bin/%s\n' $$m > $(PREFIX)/var/db/baetyl/$$m/package.yml; fi; \
	  done; \
	  if [ -x scripts/install-extra.sh ]; then scripts/install-extra.sh $(PREFIX) $(BUILD); fi; \
	fi
	@# The SDK, for custom modules built outside the tree: pkg-config --cflags --libs baetyl-sdk
	install -d $(PREFIX)/include/baetyl $(PREFIX)/lib/pkgconfig
	install -m 0644 sdk/include/baetyl/*.h $(PREFIX)/include/baetyl/
	install -m 0644 $(SDK_LIB) $(PREFIX)/lib/libbaetyl-sdk.a
	@sed -e 's|@PREFIX@|$(abspath $(PREFIX))|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@REQUIRES@|$(SDK_PKGS) libprotobuf-c libnghttp2|g' \
	  scripts/baetyl-sdk.pc.in > $(PREFIX)/lib/pkgconfig/baetyl-sdk.pc
	@# A systemd unit (the seed's `systemctl start baetyl`); enable it with systemctl link/enable.
	install -d $(PREFIX)/lib/systemd/system
	@sed -e 's|@PREFIX@|$(abspath $(PREFIX))|g' scripts/baetyl.service.in > $(PREFIX)/lib/systemd/system/baetyl.service
	@echo "installed into $(PREFIX) (mode $(MODE))"

uninstall:
	rm -f $(PREFIX)/bin/baetyl $(PREFIX)/lib/systemd/system/baetyl.service
	rm -rf $(PREFIX)/include/baetyl $(PREFIX)/lib/libbaetyl-sdk.a $(PREFIX)/lib/pkgconfig/baetyl-sdk.pc
	@for d in $(MODULE_DIRS) function-python function-node; do \
	  rm -rf $(PREFIX)/var/db/baetyl/baetyl-$$d; done
	@echo "removed baetyl from $(PREFIX) (etc/ and application data are kept)"

clean:
	rm -rf build

rebuild: clean
	$(MAKE) --no-print-directory all

# ---- the main job: native mode, the seed's hub + function example -----------------------
RUN_DIR ?= $(CURDIR)/build/run
run: all
	rm -rf $(RUN_DIR) && $(MAKE) --no-print-directory install PREFIX=$(RUN_DIR) MODE=native
	@if [ -x scripts/run.sh ]; then exec scripts/run.sh $(RUN_DIR); \
	 else echo "nothing to run yet: the master is not built"; fi

# Keep objects of test binaries (make would delete them as intermediates).
.SECONDARY:

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

endif # PLATFORM_DISPATCH
