# aftercare: `make run` installs everything and starts the whole mesh on
# embedded defaults; `make test` installs what the tests need and runs them.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: run test install protos lint bench-mesh clean

## Install the project, its embedded LLM server and test tools into $(VENV).
install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject (CPU build); llama-cpp-python builds from source once (~6 min on 2 cores).
	$(PY) -m pip install --quiet -e '.[llm,test]'
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

## Regenerate the Python stubs from protos/.
protos: $(VENV)/.installed
	$(PY) protos/generate.py

## Start retrieval, triage, concierge, escalation, outreach, the LLM server and the gateway.
run: install protos
	$(PY) -m devstack

## Lint and run every test (contracts, services, gateway, the whole mesh).
test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .

bench-mesh: install
	$(PY) bench/mesh_latency.py

clean:
	rm -rf var .pytest_cache .ruff_cache
