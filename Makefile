# wallet-stack: the front door. `make help` lists the targets.
#
# Air-gapped machines (no container registry): `make airgap` (or any target
# that needs images, automatically) builds local stand-in images and writes
# .airgap.env; its image overrides are exported to every recipe below.
-include .airgap.env
export PYTHON_IMAGE REDIS_IMAGE TRAEFIK_IMAGE PROMETHEUS_IMAGE WHOAMI_IMAGE DEBIAN_IMAGE PROMETHEUS_UI_MIDDLEWARE
export REDIS_EXPORTER_IMAGE ALERTMANAGER_IMAGE

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

SERVICE := services/wallet-api
VENV := .venv
PY := $(VENV)/bin/python
COMPOSE_EDGE := docker compose -f docker-compose.traefik.yml
COMPOSE_ALL := docker compose -f docker-compose.traefik.yml -f docker-compose.yml
# Redis HA overlay (primary, 2 replicas, 3 Sentinels): make up-ha. down/clean use it
# too, so they also remove what up-ha started (and its volumes).
COMPOSE_HA := $(COMPOSE_ALL) -f docker-compose.ha.yml
PYTHON_IMAGE ?= python:3.12-slim-bookworm
WALLET_API_IMAGE ?= wallet-stack/wallet-api:dev
PORT ?= 8000
# CI sets JUNIT_DIR: every pytest run then writes a JUnit report there (.ci/run sums them up).
junit = $(if $(JUNIT_DIR),--junitxml=$(abspath $(JUNIT_DIR))/$(1).xml)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# -- Python ------------------------------------------------------------------

$(VENV)/.installed-lock: $(SERVICE)/requirements-dev.lock $(SERVICE)/pyproject.toml tools/pyproject.toml virtual.sh
	@source virtual.sh && test -s $@

.PHONY: venv
venv: $(VENV)/.installed-lock ## Create/refresh .venv (same as `source virtual.sh`)

.PHONY: lock
lock: venv ## Re-resolve the pinned lock files from pyproject.toml (the dev lock also pins tools/)
	cd $(SERVICE) && for spec in :requirements.lock test:requirements-test.lock dev:requirements-dev.lock; do \
	  extra=$${spec%%:*}; out=$${spec#*:}; \
	  ../../$(VENV)/bin/uv pip compile pyproject.toml $${extra:+--extra $$extra} \
	    $$([ "$$extra" = dev ] && echo ../../tools/pyproject.toml) --universal \
	    --python-version 3.11 --no-header -q -o "$$out"; done

.PHONY: unit_test_python
unit_test_python: venv ## Fast unit tests of the wallet API (fakeredis; stage 1)
	cd $(SERVICE) && ../../$(PY) -m pytest -m "not redis" --cov=wallet_api --cov-report=term-missing:skip-covered $(call junit,unit)

.PHONY: test_tools
test_tools: venv ## Tests of the repository tools (tools/: secrets, local CA)
	cd tools && ../$(PY) -m pytest -q $(call junit,tools)

.PHONY: test_redis
test_redis: venv ## Concurrency tests against a real redis-server and gunicorn
	cd $(SERVICE) && ../../$(PY) -m pytest -m redis -s $(call junit,redis)

.PHONY: lint
lint: venv ## ruff, mypy, shellcheck, hadolint, actionlint, yamllint, promtool, chart docs up to date
	$(VENV)/bin/ruff check $(SERVICE) tools tests
	$(VENV)/bin/ruff format --check $(SERVICE) tools tests
	cd $(SERVICE) && ../../$(VENV)/bin/mypy
	cd tools && ../$(VENV)/bin/mypy
	$(VENV)/bin/shellcheck virtual.sh scripts/*.sh .ci/run infra/redis/*.sh
	$(VENV)/bin/hadolint $(SERVICE)/Dockerfile infra/airgap/*/Dockerfile
	$(VENV)/bin/actionlint
	$(VENV)/bin/yamllint -s .
	scripts/promtool.sh check config infra/prometheus/prometheus.yml
	scripts/promtool.sh test rules infra/prometheus/tests/*.yml
	$(PY) -m stackctl chart-docs --check

.PHONY: chart-docs
chart-docs: venv ## Regenerate the chart README values table and values.schema.json from values.yaml
	$(PY) -m stackctl chart-docs

.PHONY: test
test: ## Everything CI runs: lint, unit, tools, redis, image, helm, parity, testcontainers, compose e2e, fresh-check, release-check
	@# Two at a time where nothing measures time or load: the static checks and unit
	@# suites; then fresh-check (mostly a pristine container's apt and build) beside the
	@# docker checks. The load, failover and edge suites run alone.
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint unit_test_python test_tools helm-lint images
	@$(MAKE) --no-print-directory test_redis
	@$(MAKE) --no-print-directory -j2 --output-sync=target fresh-check _docker_checks
	@$(MAKE) --no-print-directory integration e2e

.PHONY: _docker_checks
_docker_checks: images
	@$(MAKE) --no-print-directory unit_test_docker parity release-check

.PHONY: dev
dev: venv ## Run the API with gunicorn on 127.0.0.1:PORT, default 8000 (starts a local redis-server if REDIS_URL is unset)
	cd $(SERVICE) && PORT=$(PORT) ../../$(PY) -m devtools.dev

.PHONY: bench
bench: venv ## Benchmark on 127.0.0.1: ratios vs bare Flask, hot wallet on 2 instances, verdicts (BENCH_ARGS=--profile)
	cd $(SERVICE) && ../../$(PY) -m devtools.bench $(BENCH_ARGS)

# -- Containers --------------------------------------------------------------

.PHONY: airgap
airgap: ## Air-gapped mode: start Docker, build local stand-in images, write .airgap.env
	scripts/airgap.sh

# REGISTRY_MODE=auto|upstream|airgap (default auto) picks upstream images or the stand-ins;
# see `scripts/airgap.sh --check` (tools/src/stackctl/registry.py). Forced upstream (GitHub):
# a failing registry stops here with one error line instead of an air-gapped build.
.PHONY: images
images:
	@# Engine and Compose v2 in either mode (a fresh Debian's docker.io has no Compose v2).
	@if ! docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then \
	  scripts/airgap.sh --engine; fi
	@rc=0; scripts/airgap.sh --check >/dev/null || rc=$$?; \
	case $$rc in \
	  0|3) ;; \
	  1) echo "no container registry answers: using air-gapped stand-ins (scripts/airgap.sh)"; \
	     scripts/airgap.sh ;; \
	  *) exit $$rc ;; \
	esac

.PHONY: unit_test_docker
unit_test_docker: images ## Build the image and run the unit tests inside it (stage 2)
	@$(MAKE) --no-print-directory _unit_test_docker

.PHONY: _unit_test_docker
_unit_test_docker:
	docker build --target test --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t wallet-stack/wallet-api:test $(SERVICE)
	docker run --rm $(if $(JUNIT_DIR),-v $(abspath $(JUNIT_DIR)):/reports -e PYTEST_ADDOPTS=--junitxml=/reports/docker.xml) wallet-stack/wallet-api:test

.PHONY: helm-lint
helm-lint: venv ## Helm: lint --strict, template every example, kubernetes-validate 1.31-1.35, chart tests
	scripts/helm-validate.sh
	$(PY) -m pytest tests/helm -q $(call junit,helm)

.PHONY: parity
parity: venv images ## Compose vs Helm parity, and the chart's probes checked against the image in Docker
	@$(MAKE) --no-print-directory _parity

.PHONY: _parity
_parity:
	docker build -q --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t $(WALLET_API_IMAGE) $(SERVICE)
	WALLET_API_IMAGE=$(WALLET_API_IMAGE) $(PY) -m pytest tests/parity -q $(call junit,parity)

.PHONY: integration
integration: venv images ## Testcontainers suite: replicas sharing Redis, concurrency and faults
	@$(MAKE) --no-print-directory _integration

.PHONY: _integration
_integration:
	$(PY) -m pytest tests/integration/containers -m containers -s $(call junit,integration)

.PHONY: e2e
e2e: venv images ## Compose end-to-end: brings the whole stack up, checks stages 3a/3b, tears it down
	@$(MAKE) --no-print-directory _e2e

.PHONY: _e2e
_e2e:
	$(PY) -m pytest tests/integration/stack -m stack -s $(call junit,e2e)

.PHONY: fresh-check
fresh-check: venv images ## A new user's `make up` in a pristine Debian container (fresh clone of HEAD, other ports)
	@$(MAKE) --no-print-directory _fresh_check

.PHONY: _fresh_check
_fresh_check:
	$(PY) -m pytest tests/fresh -m fresh -p no:cacheprovider $(call junit,fresh-check)

.PHONY: release-check
release-check: venv images ## Release rehearsal: image + chart through a local OCI registry by digest, SBOM vs requirements.lock
	@$(MAKE) --no-print-directory _release_check

.PHONY: _release_check
_release_check:
	@# The image ID, not the tag: the Docker engine (and its tags) may be shared with other work trees.
	id="$$(docker build -q --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t $(WALLET_API_IMAGE) $(SERVICE))"; \
	WALLET_API_IMAGE="$$id" $(PY) -m pytest tests/release -m release -s -rs -p no:cacheprovider $(call junit,release-check)

.PHONY: secrets
secrets: venv ## Generate .env, the htpasswd and the local TLS CA/certificate (kept if present)
	@$(PY) -m stackctl secrets

.PHONY: key
key: venv ## Create an API key: make key TENANT=acme SCOPES=wallets:read,money:move (token printed once)
	@$(PY) -m stackctl keys create --tenant "$(TENANT)" --scopes "$(SCOPES)" \
	  $(if $(DESCRIPTION),--description "$(DESCRIPTION)")

.PHONY: up_traefik
up_traefik: images secrets ## Start Traefik, Prometheus, Alertmanager and whoami, wait until healthy (stage 3a)
	@$(MAKE) --no-print-directory _up_traefik

.PHONY: _up_traefik
_up_traefik:
	$(COMPOSE_EDGE) up -d --wait
	scripts/wait-healthy.sh
	@$(PY) -m stackctl urls --edge-only --wait 60

.PHONY: up
up: images secrets ## Start the whole stack (Traefik stack + wallet-api replicas + Redis) and wait (stage 3b)
	@$(MAKE) --no-print-directory _up

# One recipe for both: only the compose files differ.
.PHONY: _up _up_ha
_up: UP_COMPOSE = $(COMPOSE_ALL)
_up_ha: UP_COMPOSE = $(COMPOSE_HA)
_up _up_ha:
	$(UP_COMPOSE) up -d --build --wait
	scripts/wait-healthy.sh
	@$(PY) -m stackctl urls --wait 60

.PHONY: backup
backup: venv ## Consistent Redis snapshot of the running stack into backups/ (timestamp + .sha256)
	@$(PY) -m stackctl backup

.PHONY: restore
restore: venv ## Put a snapshot back: make restore FILE=backups/redis-<time>.rdb (stops the API meanwhile)
	@test -n "$(FILE)" || { echo "restore: usage: make restore FILE=backups/redis-<time>.rdb" >&2; exit 2; }
	@$(PY) -m stackctl restore "$(FILE)"

.PHONY: grafana
grafana: images secrets ## Optional Grafana with the wallet-stack dashboard at https://grafana.localhost/ (needs a registry)
	@if [ -f .airgap.env ]; then \
	  echo "grafana: skipped: air-gapped mode has no Grafana image (Debian ships none); the dashboard's queries are tested against Prometheus (make e2e)"; \
	else $(COMPOSE_ALL) --profile grafana up -d --wait grafana; fi

.PHONY: up-ha
up-ha: images secrets ## Like `make up`, with Redis HA: primary + 2 replicas + 3 Sentinels (docker-compose.ha.yml)
	@$(MAKE) --no-print-directory _up_ha

.PHONY: down
down: ## Stop and remove the stack's containers, HA ones included (volumes are kept; `make clean` drops them)
	$(COMPOSE_HA) --profile grafana down --remove-orphans

.PHONY: clean
clean: ## Stop the stack and delete its volumes (Redis data, Prometheus TSDB)
	$(COMPOSE_HA) --profile grafana down --remove-orphans --volumes

.PHONY: logs
logs: ## Follow the stack's logs
	$(COMPOSE_HA) logs -f --tail=100

.PHONY: ps
ps: ## Show the stack's containers and their health
	$(COMPOSE_HA) ps

.PHONY: bench-stack
bench-stack: ## The load through Traefik (HTTPS) and straight to the same replicas: ratios, CPU, verdicts (runs `make up`)
	python3 $(SERVICE)/devtools/bench_stack.py $(BENCH_STACK_ARGS)
