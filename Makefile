# The two commands of the README: `make demo` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A stamp per install flavour, redone when pyproject.toml changes.
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test
DEMO_OUT ?= demo_output
PYTEST_ARGS ?=
# The viewer's JavaScript libraries (OpenSeadragon), from the npm registry into an ignored folder.
VIEWER_STAMP := viewer/node_modules/.installed

.PHONY: demo test lint typecheck bench clean viewer-assets chromium

demo: $(BASE_STAMP) viewer-assets
	$(BIN)/tmescope demo --out $(DEMO_OUT)

test: $(TEST_STAMP) viewer-assets chromium
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

bench: $(BASE_STAMP)
	$(BIN)/python benchmarks/synth_cohort.py --json

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(BASE_STAMP) $@

viewer-assets:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(VIEWER_STAMP); \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && apt-get install -y -qq npm >/dev/null && $(MAKE) --no-print-directory $(VIEWER_STAMP); \
	else \
		echo "npm not found: tmescope serve will say its JavaScript libraries are missing; install Node.js and npm, then run 'make viewer-assets'"; \
	fi

$(VIEWER_STAMP): viewer/package.json viewer/package-lock.json
	npm ci --prefix viewer --no-audit --no-fund --loglevel=error
	touch $@

# The browser test drives Debian's chromium; install it where we can (root), else it skips.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "chromium not found and not root: the browser test will be skipped"; \
		fi; \
	fi

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .mypy_cache .hypothesis viewer/node_modules
