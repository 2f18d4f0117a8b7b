# The two front-door commands are `make run` and `make test`; both install what they need first.
.DEFAULT_GOAL := help
.PHONY: help bootstrap run test lint format bench lock

LOCK_FLAGS = --quiet --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
	--no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

bootstrap: ## install Postgres and Redis if missing, and the locked Python packages into .venv
	@bash scripts/bootstrap.sh

run: bootstrap ## start the whole trio on this machine, in the foreground until Ctrl-C
	.venv/bin/sluice dev run

test: lint ## lint, then run every test (options: PYTEST_ARGS="-k drain -x")
	.venv/bin/pytest $(PYTEST_ARGS)

lint: bootstrap ## ruff check, ruff format --check, import contracts, mypy
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/mypy

format: bootstrap ## apply ruff's fixes and format the tree
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench: bootstrap ## run one benchmark: make bench BENCH=ingest [ARGS="..."]
	.venv/bin/python -m bench $(BENCH) $(ARGS)

lock: bootstrap ## re-resolve the lock files from pyproject.toml (LOCK_ARGS=--upgrade for newest)
	.venv/bin/pip-compile $(LOCK_FLAGS) --output-file requirements.lock pyproject.toml
	.venv/bin/pip-compile $(LOCK_FLAGS) --extra dev --constraint requirements.lock \
		--output-file requirements-dev.lock pyproject.toml
