# sso-fanout: the commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
CLI := $(CARGO) run --quiet -p sso-fanout-cli --
# Lambda architecture for `make package` / `make deploy`: x86_64 or arm64 (arm64 needs a
# toolchain that can target aarch64; this repository's CI builds x86_64).
ARCH ?= x86_64

.PHONY: help demo test test-rust lint bench bench-reconcile package deploy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

demo: ## Assign a permission set across a simulated organization of 29 accounts (no AWS needed)
	$(CLI) run --sim 29 --seed 1 --operation assign --permission-set AdministratorAccess \
	  --group PlatformAdmins --filter '*'

test: test-rust lint ## The whole suite: Rust tests (simulator, CLI, moto), infra lint and state machine checks

test-rust: ## Rust unit and integration tests (starts moto on 127.0.0.1 when needed)
	$(CARGO) test --workspace --no-fail-fast

lint: ## cfn-lint and a checkov security scan of the SAM template, asl-validator and local runs of the state machine
	bash tests/lint/run.sh

bench: ## sso-fanout vs the seed's strategies on 29, 500 and 5,000 simulated accounts
	$(CLI) bench --accounts 29,500,5000 --seed 7

bench-reconcile: ## A 40-rule desired-state document reconciled with prune on 500 simulated accounts (seed 7, then seeds 1-10)
	$(CLI) bench --scenario reconcile --accounts 500 --seed 7
	$(CLI) bench --scenario reconcile --accounts 500 --seed 1 --repeat 10

bench-wire: ## sso-fanout vs the seed's own tool (awsideman from PyPI) on the wire emulator, 29 and 200 accounts
	$(CARGO) build --quiet -p sso-fanout-cli
	bash tests/wire/run.sh 29,200 7

package: ## Lambda zips (a bootstrap each) for ARCH=x86_64|arm64 under target/lambda/
	bash infra/package.sh $(ARCH)

deploy: ## sam build + sam deploy (guided the first time)
	cd infra && sam build --beta-features --parameter-overrides Architecture=$(ARCH) && \
	  if [ -f samconfig.toml ] && grep -q '^\[default.deploy' samconfig.toml; then sam deploy; else sam deploy --guided; fi

clean: ## Remove build output and local tool environments
	$(CARGO) clean
	rm -rf .venv-moto .venv-lint .venv-checkov .venv-package tests/lint/node_modules

.PHONY: local-cloud local-cloud-down
local-cloud: ## Start moto with the real state machine and the built functions on 127.0.0.1 (see tests/local-cloud)
	$(CARGO) build -p fanout-planner -p fanout-worker -p fanout-reporter -p sso-fanout-cli
	bash tests/local-cloud/up.sh

local-cloud-down: ## Stop the local cloud started by make local-cloud
	bash tests/local-cloud/down.sh
