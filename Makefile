# Developer entry points. The full check (what CI runs) is `make check`,
# i.e. scripts/test-all.sh, which installs its own dependencies.

SHELL := /bin/bash

# Go may not be on PATH (e.g. under sudo): fall back to /usr/local/go.
GO ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# Debian versions start with a digit: v1.2.3 -> 1.2.3, v1.2.3-4-gabc -> 1.2.3.4.gabc,
# an untagged abc123 -> 0.0.0~abc123 (sorts before any release).
DEB_VERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^v([0-9]+\.)/\1/; /^[0-9]+\./!s/^/0.0.0~/; s/-/./g')
DEB_ARCH ?= amd64
# Reproducible man page dates: the commit's time.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Release platforms of make dist.
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
# The Debian packager, at a pinned version (built once by the Go toolchain).
NFPM_VERSION := 2.48.0
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v$(NFPM_VERSION)
# The container image make image builds, and the local base image its first
# stage copies CA certificates from (see Dockerfile).
IMAGE ?= imds:$(VERSION)
# Also tagged (the compose example's default); empty for none.
IMAGE_LATEST ?= imds:latest
BASE_IMAGE ?= imds-build-base:bookworm
FUZZTIME ?= 30s
# Extra flags for tools/bench, e.g. make bench BENCHFLAGS="-duration 10s -json"
BENCHFLAGS ?=

.PHONY: build dist deb image test check lint bench fuzz clean

## build: static binary in dist/imds
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/imds ./cmd/imds

## dist: static release binaries dist/imds-$(VERSION)-OS-ARCH and dist/SHA256SUMS
dist:
	@mkdir -p dist
	set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; out=dist/imds-$(VERSION)-$$os-$$arch; \
		echo "$$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/imds; \
	done
	cd dist && sha256sum imds-$(VERSION)-* > SHA256SUMS

## deb: Debian package dist/imds_$(DEB_VERSION)_$(DEB_ARCH).deb (DEB_ARCH=amd64|arm64)
deb:
	rm -rf dist/deb && mkdir -p dist/deb
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DEB_ARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/deb/imds ./cmd/imds
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/imds gendocs --man-dir dist/deb/man --completion-dir dist/deb/completion
	gzip -9n dist/deb/man/*.1
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH=$(DEB_ARCH) \
		$(NFPM) package --config packaging/nfpm.yaml --packager deb --target dist/imds_$(DEB_VERSION)_$(DEB_ARCH).deb
	@echo dist/imds_$(DEB_VERSION)_$(DEB_ARCH).deb

## image: container image $(IMAGE) from a static binary built here (see Dockerfile)
image:
	rm -rf dist/image && mkdir -p dist/image
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DEB_ARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/image/imds ./cmd/imds
	docker image inspect $(BASE_IMAGE) >/dev/null 2>&1 || ./scripts/base-image.sh $(BASE_IMAGE)
	# The first stage is built under a tag of its own and removed after, so
	# that the legacy builder leaves no untagged images behind.
	docker build -q --build-arg BASE=$(BASE_IMAGE) --target rootfs -t $(IMAGE)-rootfs -f Dockerfile dist/image
	docker build -q --build-arg BASE=$(BASE_IMAGE) -t $(IMAGE) -f Dockerfile dist/image
	docker rmi $(IMAGE)-rootfs >/dev/null
	$(if $(IMAGE_LATEST),docker tag $(IMAGE) $(IMAGE_LATEST))

## test: unit tests with the race detector
test:
	$(GO) test -race ./...

## check: everything CI runs (installs dependencies; re-runs itself with sudo)
check:
	./scripts/test-all.sh

## lint: gofmt, go vet, staticcheck
lint:
	./scripts/lint.sh

## bench: throughput of `imds serve` against constant net/http and fasthttp servers, RSS, start-up time (needs wrk)
bench:
	$(GO) run ./tools/bench $(BENCHFLAGS)

## fuzz: every Fuzz target for FUZZTIME each
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

## clean: remove build outputs
clean:
	rm -rf dist
