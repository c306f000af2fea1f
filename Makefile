# marin — top-level entry points. meson and ninja do the building; this file
# sets a fresh Debian 12 machine up and strings the steps together, so that
# `make test` and `make demo` work from nothing.
#
#   make deps        install the Debian packages that are missing (root or sudo)
#   make build       deps, configure build/ (once), ninja          (default)
#   make test        build; Check suites in build/, then again in build-asan/
#                    (ASan+UBSan), the threaded suites in build-tsan/ (TSan);
#                    then $(EXTRA_TESTS)
#   make demo        build; run examples/demo_pipeline into $(DEMO_OUT)
#   make demo-check  run the demo twice from one manifest, compare the bytes
#   make tsan        only the TSan stage (actor, lease and threaded suites)
#   make bench       build; run build/bench/marin-bench local
#   make clean       remove build/, build-asan/, build-tsan/ and out/

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
# Steps run one after another, in the order written; ninja and meson test
# parallelise inside each step.
.NOTPARALLEL:

PYTHON     ?= /usr/bin/python3
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
BUILD      ?= build
ASAN_BUILD ?= build-asan
DEMO_OUT   ?= out/demo

MESON_SETUP_ARGS ?=
ASAN_SETUP_ARGS  := -Db_sanitize=address,undefined -Db_lundef=false -Dpython=disabled
MESON_TEST_ARGS  ?= --print-errorlogs --num-processes $(JOBS)
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
TSAN_BUILD ?= build-tsan
TSAN_SETUP_ARGS := -Db_sanitize=thread -Db_lundef=false -Dpython=disabled
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
# The suites where threads meet: futures, tasks, the local scheduler, the
# map, actors and leases, and the task and actor runs on Redis (driver,
# in-process worker and actor host threads meet there).
TSAN_SUITES := future task local map runtime actor kv task_on_redis actor_on_redis

DEB_PACKAGES := build-essential meson ninja-build pkg-config libuv1-dev \
    libzstd-dev zstd check libsubunit-dev libhiredis-dev libjansson-dev \
    libxxhash-dev libcurl4-openssl-dev redis-server redis-tools python3-cffi \
    python3-pytest python3-dev python3-cloudpickle

# ---------------------------------------------------------------------------
# LATER TEST STAGES — targets listed in EXTRA_TESTS run at the end of
# `make test`, after the C suites of all builds. None yet.
# Redis needs no stage and no server of its own here: the tests start their
# own redis-server (tests/redis_fixture.c: $MARIN_REDIS_SERVER, else
# /usr/bin/redis-server, else PATH) on a free loopback port, one per suite
# process, and stop it when that process exits. The conformance runs
# (meson suite `redis`: the local suites again with MARIN_TEST_BACKEND=redis)
# are part of test-c and test-asan; they skip (exit 77, reason printed)
# while libmarin is built without the redis backend or redis-server is
# missing. Only them: meson test -C build --suite redis.
# The pytest suite of bindings/python is the meson test `python` of build/
# (run by test-c with Debian's /usr/bin/python3; the sanitizer builds
# configure with -Dpython=disabled).
EXTRA_TESTS  :=
# ---------------------------------------------------------------------------

export PYTHON

.PHONY: all deps build test test-c test-asan test-tsan test-tsan-run tsan demo demo-check bench clean

all: build

# Install what is missing, non-interactively. apt-get update runs only when
# there are no package lists yet or when the install fails.
deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  st=$$(dpkg-query -W -f='$${db:Status-Status}' "$$p" 2>/dev/null || true); \
	  [ "$$st" = installed ] || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
	  echo "==> deps: all $(words $(DEB_PACKAGES)) Debian packages present"; \
	  exit 0; \
	fi; \
	echo "==> deps: installing$$missing"; \
	sudo=""; \
	if [ "$$(id -u)" != 0 ]; then \
	  if command -v sudo >/dev/null; then sudo="sudo"; \
	  else echo "deps: not root and no sudo; please install:$$missing" >&2; exit 1; fi; \
	fi; \
	apt_install() { \
	  $$sudo env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y --no-install-recommends $$missing; \
	}; \
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then \
	  echo "==> deps: no package lists yet: apt-get update"; \
	  $$sudo apt-get update; \
	fi; \
	if ! apt_install; then \
	  echo "==> deps: install failed; apt-get update and retry"; \
	  $$sudo apt-get update; \
	  apt_install; \
	fi

# Configure a build directory once (ninja reconfigures by itself when a
# meson.build changes). A half-configured directory is wiped and redone.
# $(call configure,DIR,ARGS)
define configure
	@if [ ! -f $(1)/build.ninja ]; then \
	  echo "==> meson setup $(strip $(2) $(1))"; \
	  if [ -d $(1)/meson-private ]; then \
	    meson setup --wipe $(2) $(1); \
	  else \
	    meson setup $(2) $(1); \
	  fi; \
	fi
endef

$(BUILD)/build.ninja: | deps
	$(call configure,$(BUILD),$(MESON_SETUP_ARGS))

$(ASAN_BUILD)/build.ninja: | deps
	$(call configure,$(ASAN_BUILD),$(MESON_SETUP_ARGS) $(ASAN_SETUP_ARGS))

$(TSAN_BUILD)/build.ninja: | deps
	$(call configure,$(TSAN_BUILD),$(MESON_SETUP_ARGS) $(TSAN_SETUP_ARGS))

build: $(BUILD)/build.ninja
	@echo "==> ninja -C $(BUILD)"
	@ninja -C $(BUILD) -j $(JOBS)

test: test-c test-asan test-tsan $(EXTRA_TESTS)
	@echo "==> test: all stages passed"

test-c: build
	@echo "==> meson test -C $(BUILD)"
	@meson test -C $(BUILD) $(MESON_TEST_ARGS)

test-asan: $(ASAN_BUILD)/build.ninja
	@echo "==> ninja -C $(ASAN_BUILD)  (ASan+UBSan)"
	@ninja -C $(ASAN_BUILD) -j $(JOBS)
	@echo "==> meson test -C $(ASAN_BUILD)  (ASan+UBSan)"
	@$(ASAN_ENV) meson test -C $(ASAN_BUILD) $(MESON_TEST_ARGS)

# ThreadSanitizer cannot run on some kernels (a high vm.mmap_rnd_bits makes
# it die with "unexpected memory mapping"): probe first, and skip the stage
# with the reason printed rather than fail on the machine.
test-tsan: $(TSAN_BUILD)/build.ninja
	@probe=$$(mktemp -d); \
	printf 'int main(void){return 0;}\n' > $$probe/p.c; \
	if ! cc -fsanitize=thread $$probe/p.c -o $$probe/p 2>$$probe/err || \
	   ! $$probe/p 2>>$$probe/err; then \
	  echo "==> SKIPPED the TSan stage: this machine cannot run ThreadSanitizer:"; \
	  head -3 $$probe/err; rm -rf $$probe; exit 0; \
	fi; rm -rf $$probe; \
	$(MAKE) --no-print-directory test-tsan-run

tsan: test-tsan

test-tsan-run:
	@echo "==> ninja -C $(TSAN_BUILD)  (TSan)"
	@ninja -C $(TSAN_BUILD) -j $(JOBS)
	@echo "==> meson test -C $(TSAN_BUILD) $(TSAN_SUITES)  (TSan)"
	@$(TSAN_ENV) meson test -C $(TSAN_BUILD) $(MESON_TEST_ARGS) $(TSAN_SUITES)

# The demo writes its manifest on the first run and reuses it afterwards
# (delete $(DEMO_OUT)/manifest.txt to rescan). zstd -t checks that the
# shards are ordinary zstd files.
demo: build
	@echo "==> demo_pipeline --out $(DEMO_OUT)"
	@$(BUILD)/examples/demo_pipeline --out $(DEMO_OUT)
	@zstd -tq $(DEMO_OUT)/input/*.jsonl.zst $(DEMO_OUT)/output/*.jsonl.zst
	@echo "==> zstd -t: every shard of $(DEMO_OUT) decompresses; summary: $(DEMO_OUT)/summary.json"

demo-check: build
	@echo "==> demo_pipeline twice from one manifest (out/demo-check/a, b)"
	@rm -rf out/demo-check
	@$(BUILD)/examples/demo_pipeline --out out/demo-check/a
	@mkdir -p out/demo-check/b
	@cp out/demo-check/a/manifest.txt out/demo-check/b/
	@$(BUILD)/examples/demo_pipeline --out out/demo-check/b --max-in-flight 2
	@diff -r out/demo-check/a out/demo-check/b
	@zstd -tq out/demo-check/a/input/*.jsonl.zst out/demo-check/a/output/*.jsonl.zst
	@echo "==> demo-check: both runs byte-identical, shards decompress"

bench: build
	@echo "==> marin-bench local"
	@$(BUILD)/bench/marin-bench local

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) build-python out
