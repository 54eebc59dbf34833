# cryo: `make demo` and `make test` are all a new machine needs (run as root).
# `make fuzz` fuzzes the image loader for FUZZ_SECONDS per target (libFuzzer,
# clang, in $(BUILD)-fuzz; see tests/fuzz/run-fuzz.sh); `make test` runs the
# same targets for a few seconds as the ctest test fuzz.image_loader.
BUILD ?= build
JOBS  ?= $(shell nproc)
CTEST_ARGS ?=
FUZZ_SECONDS ?= 300
BENCH_SOAK ?= 1
PREFIX ?= /usr/local
DESTDIR ?=

# Debian packages: what the build needs, what the demos (and benchmarks) add,
# and what only the tests need (container runtimes, the servers they
# checkpoint, and for the fuzz targets clang with its libFuzzer and sanitizer
# runtimes and llvm-symbolizer). `make demo` installs the first two only.
BUILD_PACKAGES := cmake g++ make pkg-config protobuf-compiler libprotobuf-dev libxxhash-dev \
                  doctest-dev nlohmann-json3-dev libyaml-cpp-dev libseccomp-dev libarchive-dev libssl-dev
DEMO_PACKAGES  := python3 curl procps nftables podman busybox-static
TEST_PACKAGES  := iproute2 iptables strace containerd tmux skopeo docker-registry python3-protobuf \
                  postgresql nginx-light redis-server nodejs memcached openjdk-17-jdk-headless golang-go valgrind \
                  clang-14 libclang-rt-14-dev llvm-14

.PHONY: all deps test-deps build install test fuzz demo bench soak clean

all: build

deps:
	@./scripts/install-deps $(BUILD_PACKAGES) $(DEMO_PACKAGES)

test-deps:
	@./scripts/install-deps $(BUILD_PACKAGES) $(DEMO_PACKAGES) $(TEST_PACKAGES)

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Installs bin/cryo, man/man1/cryo.1 and the README under $(DESTDIR)$(PREFIX).
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

test: test-deps build
	cd $(BUILD) && ctest --output-on-failure -j 1 $(CTEST_ARGS)

fuzz: test-deps build
	./tests/fuzz/run-fuzz.sh $(BUILD)/runtime/cryo $(FUZZ_SECONDS) $(BUILD)-fuzz

demo: deps build
	./integration/demo/counter_demo.sh $(BUILD)/runtime/cryo
	./integration/demo/webserver_demo.sh $(BUILD)/runtime/cryo
	./integration/demo/podman_demo.sh $(BUILD)/runtime/cryo

bench: deps build
	./bench/run.sh $(BUILD)/runtime/cryo
	python3 bench/migration.py $(BUILD)/runtime/cryo
	python3 bench/incremental.py $(BUILD)/runtime/cryo
	python3 bench/pause.py $(BUILD)/runtime/cryo
	python3 bench/lazy.py $(BUILD)/runtime/cryo $(BUILD)/integration/workloads/lazymem
ifneq ($(BENCH_SOAK),0)
	python3 bench/soak.py $(BUILD)/runtime/cryo
endif

# Dump/restore cycles of a server with a live client (SOAK_CYCLES, default 1000); not part of `make test`.
soak: deps build
	python3 bench/soak.py $(BUILD)/runtime/cryo

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz
