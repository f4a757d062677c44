# The two commands of the README's quick start, and the few a developer needs besides.
# Everything runs from a virtual environment in .venv that the first command creates.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
# The web demo's port: make demo PORT=8090
PORT ?= 8080
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

.PHONY: demo demo-terminal test test-postgres check run install lint-messages clean

demo: $(RUNTIME)            ## try the bot: local Telegram stand-in, SQLite, a web page at http://127.0.0.1:8080
	$(BIN)/trialbot demo --port $(PORT)

demo-terminal: $(RUNTIME)   ## the same in a terminal chat
	$(BIN)/trialbot demo --terminal

test: $(INSTALLED)          ## the whole test suite (PostgreSQL too when TRIALBOT_TEST_DATABASE_URL is set)
	$(BIN)/pytest

test-postgres: $(INSTALLED) ## the suite on SQLite and on the local PostgreSQL
	TRIALBOT_TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test TRIALBOT_REQUIRE_POSTGRES=1 $(BIN)/pytest

check: $(INSTALLED)         ## the static checks: ruff (pyproject.toml [tool.ruff]) and mypy held to its baseline (.ci/mypy-gate)
	$(BIN)/ruff check .
	$(BIN)/python .ci/mypy-gate

run: $(RUNTIME)             ## production: needs TELEGRAM_BOT_TOKEN (in .env: `trialbot init DIR` writes one)
	$(BIN)/trialbot run

install: $(RUNTIME)         ## the runtime dependencies only (a server's install: docs/deploy.md)

# Two installs into one .venv: the runtime alone (demo, run, a server) and, for tests, the runtime
# with the dev extras (pytest, Playwright...) on top.
$(RUNTIME): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "trialbot needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(INSTALLED): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache
