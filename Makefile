# tap-bigcommerce: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: venv targets demo test test-fast e2e bench clean

$(BIN)/tap-bigcommerce: setup.py tap_bigcommerce/*.py tap_bigcommerce/sandbox/*.py schemas/*.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '.[test]'
	touch $@

venv: $(BIN)/tap-bigcommerce

targets: venv
	bash scripts/setup-targets.sh

demo: venv
	bash scripts/setup-targets.sh target-jsonl
	$(BIN)/python scripts/demo.py

test: venv targets
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not e2e" --ignore=tests/e2e

e2e: venv targets
	$(BIN)/python -m pytest -q -m e2e tests/e2e

bench: venv targets
	$(BIN)/python scripts/benchmark.py

clean:
	rm -rf $(VENV) .venvs build *.egg-info out demo-output .meltano
