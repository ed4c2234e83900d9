# The README's commands. Each target installs what it needs into .venv on first use (Python 3.11+ and
# make only); `make test` also needs redis-server on PATH for the fleet tests (it says so when missing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench soak docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The telemetry extra is part of it: `make demo ARGS=--otlp` exports to Jaeger.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[telemetry]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/failover demo $(ARGS)

test: $(VENV)/.installed-test
	@command -v redis-server >/dev/null || echo "note: redis-server is not on PATH, so the Redis tests will fail:" \
		"install it (apt-get install redis-server, brew install redis); .ci/run does" >&2
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks soak
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks $(ARGS)

# A check, not a unit test: exits 1 when a promise was broken (soak/README.md). ~2 minutes.
soak: $(VENV)/.installed
	$(BIN)/python -m soak $(ARGS)

# docs/configuration.md's reference section, regenerated from the schema (a test fails when it is stale).
docs: $(VENV)/.installed
	$(BIN)/python -m failover.config.reference --write docs/configuration.md

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
