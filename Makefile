# The two commands of the README: `make demo` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Installs come from the locks in requirements/ (every transitive pin, with hashes): the same
# commit installs the same packages every day. `make lock` refreshes them (docs/development.md).
BASE_LOCK := requirements/base.lock.txt
TEST_LOCK := requirements/test.lock.txt
# pip-compile, in a venv of its own so that its dependencies never enter .venv.
LOCK_VENV  := .venv-lock
LOCK_TOOLS := pip-tools==7.7.0
PIP_COMPILE = $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
# A stamp per install flavour, redone when its lock or pyproject.toml changes.
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test
DEMO_OUT ?= demo_output
PYTEST_ARGS ?=
# The suite runs on pytest-xdist workers (one per core here); tests/conftest.py keeps each test
# module in one worker and shares the cores between them. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
# The viewer's JavaScript libraries (OpenSeadragon), from the npm registry into an ignored folder.
VIEWER_STAMP := viewer/node_modules/.installed

.PHONY: demo test reliability lint typecheck bench clean lock viewer-assets chromium

demo: $(BASE_STAMP) viewer-assets
	$(BIN)/tmescope demo --out $(DEMO_OUT)

test: $(TEST_STAMP) viewer-assets chromium
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The full reliability matrix (docs/reliability.md): every reader fuzzed, every writer killed at
# random moments, writers side by side, the viewer under abuse. `make test` runs a light version.
# It prints the table of counts and puts it in docs/reliability.md with the machine and date.
RELIABILITY_LOG ?= .reliability/counts.jsonl
reliability: $(TEST_STAMP)
	@mkdir -p $(dir $(RELIABILITY_LOG)) && rm -f $(RELIABILITY_LOG)
	@date +%s > $(dir $(RELIABILITY_LOG))started
	TMESCOPE_RELIABILITY=full TMESCOPE_RELIABILITY_LOG=$(abspath $(RELIABILITY_LOG)) \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope -p no:randomly \
		tests/reliability tests/store/test_concurrency.py tests/store/test_atomic.py $(PYTEST_ARGS)
	$(BIN)/python tests/reliability/table.py $(RELIABILITY_LOG) --docs docs/reliability.md \
		--seconds $$(( $$(date +%s) - $$(cat $(dir $(RELIABILITY_LOG))started) ))

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

bench: $(BASE_STAMP)
	$(BIN)/python benchmarks/synth_cohort.py --json

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The lock first (hashes checked, nothing resolved), then tmescope itself without its
# dependencies and without build isolation (its build tools are in the lock too), then a check
# that what is installed is consistent.
define install_locked
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(1)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
endef

$(BASE_STAMP): pyproject.toml $(BASE_LOCK) | $(BIN)/python
	$(call install_locked,$(BASE_LOCK))
	touch $@

# The test lock holds the base lock's versions plus the test extra: both flavours are installed.
$(TEST_STAMP): pyproject.toml $(TEST_LOCK) | $(BIN)/python
	$(call install_locked,$(TEST_LOCK))
	touch $(BASE_STAMP) $@

# Refresh both locks from pyproject.toml and requirements/*.in (the newest releases allowed);
# run it after changing dependencies, then `make test` and commit the locks with the change.
lock: | $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE) -o $(BASE_LOCK) pyproject.toml requirements/pins.in
	$(PIP_COMPILE) --extra test -o $(TEST_LOCK) pyproject.toml requirements/pins.in requirements/test.in

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet "$(LOCK_TOOLS)"

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
	rm -rf $(VENV) $(LOCK_VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .mypy_cache .hypothesis viewer/node_modules
