# Developer entry points. The full check (what CI runs) is `make check`,
# i.e. scripts/test-all.sh, which installs its own dependencies.

SHELL := /bin/bash

# Go may not be on PATH (e.g. under sudo): fall back to /usr/local/go.
GO ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 30s
# Extra flags for tools/bench, e.g. make bench BENCHFLAGS="-duration 10s -json"
BENCHFLAGS ?=

.PHONY: build test check lint bench fuzz clean

## build: static binary in dist/imds
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o dist/imds ./cmd/imds

## test: unit tests with the race detector
test:
	$(GO) test -race ./...

## check: everything CI runs (installs dependencies; re-runs itself with sudo)
check:
	./scripts/test-all.sh

## lint: gofmt, go vet, staticcheck
lint:
	./scripts/lint.sh

## bench: throughput of `imds serve` against a minimal net/http server (needs wrk)
bench:
	$(GO) run ./tools/bench $(BENCHFLAGS)

## fuzz: every Fuzz target for FUZZTIME each
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

## clean: remove build outputs
clean:
	rm -rf dist
