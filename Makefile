# prodaccess developer and CI entry points (GNU make).
#   make test          everything CI runs (platform up, checks, tests, platform down)
#   make demo KEEP=1   demo on the local platform, left running afterwards
# See tests/platform/README.md for the local test platform.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PRODACCESS_CACHE ?= /var/cache/prodaccess
export PRODACCESS_CACHE
export CARGO_TARGET_DIR ?= $(PRODACCESS_CACHE)/target
export PATH := $(HOME)/.cargo/bin:/root/.cargo/bin:$(PATH)
PRODACCESS_PLATFORM_DIR ?= $(CURDIR)/.platform
export PRODACCESS_PLATFORM_DIR
KEEP ?= 0
export KEEP

CARGO ?= cargo
PLATFORM := tests/platform
WITH_ENV := $(PLATFORM)/env.sh
CHART_CRDS := charts/prodaccess-operator/crds
CRDS_GEN = $(CARGO) run -q -p prodaccess-operator --bin prodaccess-operator -- crds --dir

.PHONY: help platform platform-up platform-down platform-status fmt-check fmt clippy unit \
        crds crds-check emulator-test e2e chart-test argocd-test test demo operator bench

help:
	@echo "targets: test demo operator bench platform platform-up platform-down platform-status"
	@echo "         fmt fmt-check clippy unit crds crds-check emulator-test e2e chart-test"
	@echo "         argocd-test"

## ---------------------------------------------------------------- local test platform
platform:
	@$(PLATFORM)/install.sh

platform-up: platform
	@$(PLATFORM)/up.sh

platform-down:
	@$(PLATFORM)/down.sh

platform-status:
	@$(PLATFORM)/status.sh

## ---------------------------------------------------------------- static checks
fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## ---------------------------------------------------------------- tests
unit:
	$(CARGO) test --workspace --lib --bins

crds:
	@rm -rf crds.tmp && mkdir -p crds.tmp
	$(CRDS_GEN) crds.tmp
	@rm -rf crds && mv crds.tmp crds
	@if [ -d charts/prodaccess-operator ]; then \
	    mkdir -p $(CHART_CRDS) && rsync -a --delete crds/ $(CHART_CRDS)/; fi
	@echo "crds/ regenerated$$([ -d charts/prodaccess-operator ] && echo ' and copied into $(CHART_CRDS)/')"

crds-check:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CRDS_GEN) "$$tmp"; \
	[ -d crds ] || { echo "crds/ is missing: run 'make crds'"; exit 1; }; \
	diff -r crds "$$tmp" || { echo "crds/ is stale: run 'make crds'"; exit 1; }; \
	if [ -d $(CHART_CRDS) ]; then \
	    diff -r $(CHART_CRDS) "$$tmp" || { echo "$(CHART_CRDS)/ is stale: run 'make crds'"; exit 1; }; fi; \
	echo "crds-check: up to date"

# pytest against the platform's emulator (make platform-up first, or this starts it)
emulator-test:
	@if [ "$${PRODACCESS_USE_EXISTING:-0}" != 1 ]; then $(PLATFORM)/status.sh >/dev/null 2>&1 || $(MAKE) --no-print-directory platform-up; fi
	@if [ ! -d tests/emulator/tests ]; then echo "emulator-test: no tests/emulator/tests, skipped"; exit 0; fi; \
	rc=0; PYTHONPATH=$(CURDIR)/tests/emulator $(WITH_ENV) bash -c '"$$PRODACCESS_PYTHON" -m pytest -q -p no:cacheprovider tests/emulator/tests' || rc=$$?; \
	if [ $$rc = 5 ]; then echo "emulator-test: no tests collected"; rc=0; fi; exit $$rc

# The tests run the operator and plugin binaries; cargo test does not rebuild those.
e2e: platform-up
	$(CARGO) build --workspace --bins
	$(WITH_ENV) $(CARGO) test --no-fail-fast --workspace --test '*' -- --test-threads=2

# The chart test starts the operator binary with the rendered arguments; build it first.
chart-test: platform-up
	$(CARGO) build -p prodaccess-operator --bins
	@if [ -x tests/chart/test.sh ] || [ -f tests/chart/test.sh ]; then \
	    $(WITH_ENV) bash tests/chart/test.sh; else echo "chart-test: no tests/chart/test.sh, skipped"; fi

# Argo CD Lua health checks (docs/argocd/) against their samples; needs no platform
argocd-test:
	bash tests/chart/argocd_health_test.sh

## ---------------------------------------------------------------- aggregates
test:
	@$(PLATFORM)/run-tests.sh

demo: platform-up
	$(CARGO) build --workspace --bins
	@[ -f tests/demo/demo.sh ] || { echo "demo: tests/demo/demo.sh does not exist yet"; exit 1; }
	@rc=0; KEEP=$(KEEP) $(WITH_ENV) bash tests/demo/demo.sh || rc=$$?; \
	if [ "$(KEEP)" != 1 ]; then $(PLATFORM)/down.sh; else echo "KEEP=1: platform left running ($(PLATFORM)/status.sh, make platform-down)"; fi; \
	exit $$rc

# Runs the operator in the foreground against the local platform (see tests/platform/operator.sh).
operator:
	@$(WITH_ENV) bash $(PLATFORM)/operator.sh $(ARGS)

bench:
	@if [ -f tests/bench/run.sh ]; then bash tests/bench/run.sh; else echo "bench: no tests/bench/run.sh"; fi
