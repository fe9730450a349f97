# Tripline: `make up` runs the whole stack in the foreground, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := $(CURDIR)/.venv
STACK := $(VENV)/bin/tripline-stack
ROLE ?= rider
SUB ?= u1
PYTEST_ARGS ?=
MANIFESTS := pyproject.toml uv.lock libs/common/pyproject.toml tools/devstack/pyproject.toml tools/loadtest/pyproject.toml \
	clients/python/pyproject.toml \
	$(wildcard services/*/pyproject.toml)

.PHONY: help install up start stop status logs token lint typecheck test k8s-validate images bench-gateway bench-core bench-tracking bench-uploads bench-sdk loadtest loadtest-baseline chaos clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: $(MANIFESTS) | $(UV)
	$(UV) sync --all-packages --frozen
	@touch $@

install: $(VENV)/.installed ## install every package into .venv (first run only)

up: install ## run the whole stack in the foreground; Ctrl-C stops it
	@$(STACK) up

start: install ## run the stack in the background and wait until it is ready
	@$(STACK) start

stop: ## stop a stack started with `make start`
	@if [ -x $(STACK) ]; then $(STACK) stop; else echo "nothing installed, nothing running"; fi

status: install ## show each process of the stack
	@$(STACK) status

logs: install ## follow the stack's logs
	@$(STACK) logs

token: install ## print a local JWT: make token ROLE=driver SUB=d1
	@$(STACK) token --role $(ROLE) --sub $(SUB)

lint: install ## ruff: formatting and lint rules
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .

typecheck: install ## mypy --strict over every package
	$(UV) run --frozen mypy

# promtool, where .ci/run unpacked it, checks the Prometheus alerting rules too.
test: export PROMTOOL ?= $(wildcard $(CURDIR)/.tools/prometheus/usr/bin/promtool)
test: lint typecheck ## every check: lint, types, unit and integration tests on real servers
	$(UV) run --frozen pytest $(PYTEST_ARGS)

k8s-validate: install ## render every deploy/k8s overlay, validate it offline, check its policy
	$(UV) run --frozen pytest tests/deploy -q -p no:cacheprovider

# One image per package under services/, each a target of the root Dockerfile. The Dockerfile
# needs BuildKit (cache mounts, COPY --parents).
IMAGES := $(patsubst services/%/pyproject.toml,%,$(wildcard services/*/pyproject.toml))

images: ## build every service's image with BuildKit: tripline/<service>:<commit>
	@docker info >/dev/null 2>&1 || { \
		echo "make images: no Docker engine found (\`docker info\` failed); no image was built" >&2; \
		exit 1; }
	@tag=$$(git rev-parse --short HEAD) && for service in $(IMAGES); do \
		DOCKER_BUILDKIT=1 docker build --build-arg SERVICE=$$service --target $$service \
			-t tripline/$$service:$$tag . || exit 1; \
	done

bench-gateway: install ## gateway vs express-gw on ../shared/bench + limit check: ROUNDS=3 DURATION=15s SKIP_RATELIMIT=1
	tools/bench/gateway.sh

bench-core: install ## core's caches through the gateway, hot vs cold keys + hit ratio: DURATION=15s VUS=20
	tools/bench/core.sh

bench-uploads: install ## presign/complete rps through the gateway + worker documents/s, queue depth: DURATION=15s VUS=20 KEYS=3000 DOCS=200
	tools/bench/uploads.sh

bench-tracking: install ## tracking fan-out vs the Socket.io reference: NS="1000 3000" DURATION=30s SKIP_REFERENCE=1 SKIP_GATEWAY=1
	tools/bench/tracking.sh

bench-sdk: install ## the client SDK's cost per call vs bare httpx, one process serving: CALLS=2000
	$(UV) run --frozen python tools/bench/sdk.py $(or $(CALLS),2000)

# Load tests (tests/load): the k6 scenarios against a private stack on free ports, or TARGET.
PROFILE ?= smoke
LOADTEST := $(VENV)/bin/tripline-loadtest
LOADTEST_FLAGS = $(PROFILE) $(if $(TARGET),--target $(TARGET)) \
	$(if $(LOADTEST_TOKENS_FILE),--tokens-file $(LOADTEST_TOKENS_FILE)) $(LOADTEST_ARGS)

loadtest: install ## load test: PROFILE=smoke|ci|full|spike TARGET=<url> GATE=1 (fail on regression too)
	$(LOADTEST) $(LOADTEST_FLAGS) $(if $(GATE),--gate)

loadtest-baseline: install ## record the release gate's baseline for PROFILE from a new run
	$(LOADTEST) $(LOADTEST_FLAGS) --update-baseline

# Chaos (tests/chaos): each fault injected into a private stack under k6's load; rows and the
# table in .loadtest/chaos/. Plain `make test` does not collect it.
chaos: install ## chaos suite: every fault under load (SUBSET=ci: the CI subset only)
	$(UV) run --frozen pytest tests/chaos -p no:cacheprovider $(if $(filter ci,$(SUBSET)),-m chaos_ci) $(PYTEST_ARGS)

clean: stop ## remove the venv, local data and caches
	rm -rf .venv .tools .data .loadtest .pytest_cache .mypy_cache .ruff_cache
