# The two front-door commands: `make run` and `make test`. Both install what they need first.
.PHONY: run test bench bootstrap

bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	.venv/bin/sluice dev run

test: bootstrap
	.venv/bin/pytest $(PYTEST_ARGS)

bench: bootstrap
	.venv/bin/python -m bench $(BENCH) $(ARGS)
