# Parley: the two commands are `make serve` and `make test`.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)
SWIFT ?= swift
ARGS ?=

.PHONY: setup build release serve test bench fuzz clean

setup:
	@tools/setup

build: setup
	$(SWIFT) build

release: setup
	$(SWIFT) build -c release

# Builds and starts the daemon with its embedded defaults (Ctrl-C stops it).
serve: release
	.build/release/parley serve $(ARGS)

# Installs, builds and runs every test.
test: setup
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Benchmarks: each script runs a baseline and Parley in one invocation and prints the ratio.
bench: release
	@for b in tools/bench/*; do [ -x "$$b" ] && [ -f "$$b" ] && { echo "== $$b"; "$$b"; }; done

fuzz: setup
	tools/fuzz/run-all

clean:
	rm -rf .build
