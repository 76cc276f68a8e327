# Quick start: `make demo` and `make test` both create .venv and install lightvid first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo lint test test-fast bench install clean

$(STAMP): pyproject.toml constraints.txt requirements-peers.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/pip install -q --no-deps -r requirements-peers.txt  # converter parity tests: MMAction2's own code
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lightvid train --config configs/quickstart.yaml

# ruff: lint rules and import order from pyproject.toml's [tool.ruff]
lint: $(STAMP)
	$(BIN)/ruff check lightvid tests benchmarks

test: $(STAMP) lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n 2 --timeout 900

test-fast: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n 2 -m "not slow"

# Every benchmark in its quick form; run one script without --quick for the figures in docs/.
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do \
	  if grep -q '"--quick"' $$b; then echo "== $$b"; $(BIN)/python $$b --quick || exit 1; \
	  else echo "== $$b: no quick form (it needs a trained checkpoint, --ckpt); not run"; fi; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
