# cryo: `make demo` and `make test` are all a new machine needs (run as root).
BUILD ?= build
JOBS  ?= $(shell nproc)
CTEST_ARGS ?=
BENCH_SOAK ?= 1

# Debian packages the build, the tests and the demos need.
PACKAGES := cmake g++ make pkg-config protobuf-compiler libprotobuf-dev libxxhash-dev \
            doctest-dev nlohmann-json3-dev libyaml-cpp-dev libseccomp-dev \
            python3 curl busybox-static procps iproute2 nftables iptables podman containerd \
            postgresql nginx-light redis-server nodejs memcached openjdk-17-jdk-headless golang-go

.PHONY: all deps build test demo bench soak clean

all: build

deps:
	@./scripts/install-deps $(PACKAGES)

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j 1 $(CTEST_ARGS)

demo: deps build
	./integration/demo/counter_demo.sh $(BUILD)/runtime/cryo
	./integration/demo/webserver_demo.sh $(BUILD)/runtime/cryo

bench: deps build
	./bench/run.sh $(BUILD)/runtime/cryo
ifneq ($(BENCH_SOAK),0)
	python3 bench/soak.py $(BUILD)/runtime/cryo
endif

# Dump/restore cycles of a server with a live client (SOAK_CYCLES, default 1000); not part of `make test`.
soak: deps build
	python3 bench/soak.py $(BUILD)/runtime/cryo

clean:
	rm -rf $(BUILD)
