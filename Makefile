# boxnet: `make demo` sets up and shows the main job; `make test` sets up and runs every test.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test unit integration lint demo bench clean

setup:
	@./scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check .

unit: setup
	$(PY) -m pytest -q tests/unit

integration: setup
	$(PY) -m pytest -q tests/integration

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests/unit tests/integration

demo: setup
	$(PY) scripts/demo.py

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
