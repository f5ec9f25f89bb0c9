# The two set-up commands of the README. Both install what is missing first (scripts/bootstrap.sh).
.PHONY: demo test down bootstrap lock schemas bench bench-producer

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/frtwatch demo

test: bootstrap
	.venv/bin/ruff check .
	.venv/bin/lint-imports  # the layers ([tool.importlinter] in pyproject.toml)
	.venv/bin/mypy
	.venv/bin/pytest
	# The pure tests once more with the judge interpreted (frtwatch/compiled.py).
	FRTWATCH_COMPILED=0 .venv/bin/pytest -q tests/unit

# requirements.lock, what bootstrap installs: every package of the environment, exact and with
# hashes, resolved from pyproject.toml (its dev extras too) for Python 3.11. Pins that still fit
# are kept; `make lock UPGRADE=--upgrade` moves them all to the newest that fit.
lock:
	.venv/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--custom-compile-command "make lock" $(UPGRADE) --quiet --output-file requirements.lock

down:
	.venv/bin/frtwatch stack down

schemas:
	.venv/bin/frtwatch contracts schemas --write

bench-producer: bootstrap
	.venv/bin/python -m bench.producer_sdk

bench: bootstrap
	.venv/bin/python -m bench.e2e
