# The two commands a newcomer needs: `make run-server` and `make test`. Each sets up
# .venv (created when missing, reinstalled when setup.py changes) before it runs.
.PHONY: help venv run-server test soak clean

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 9100
DATA_DIR ?= var
WORKERS ?= 1
SERVER_ARGS ?=
PYTEST_ARGS ?=

help:
	@echo "make run-server   set up .venv and run the server on $(HOST):$(PORT), data in ./$(DATA_DIR)/ (WORKERS=N for N processes)"
	@echo "make test         set up .venv with test tools and run the whole test suite"
	@echo "make run-client   the desktop client against $(HOST):$(PORT) (SERVER=host:port for another)"
	@echo "make screenshots  regenerate docs/screenshots/ on a virtual display"
	@echo "make soak         a 10-minute soak with 200 peers and a full consistency check"
	@echo "make clean        remove .venv and caches (keeps ./$(DATA_DIR)/)"

# A Debian python without the venv module gets it from apt when we are root.
$(BIN)/python:
	@rm -rf $(VENV)
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv (the venv module is missing)"; \
	    apt-get install -y -q python3-venv >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null; }; \
	    $(PYTHON) -m venv $(VENV); \
	  else echo "Python's venv module is missing: install python3-venv" >&2; exit 1; fi; }
	@$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python setup.py
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

run-server: $(VENV)/.installed
	$(BIN)/messenger-server --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) --workers $(WORKERS) $(SERVER_ARGS)

test: $(VENV)/.installed-test ui-system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A bounded soak (10 minutes, 200 peers by default); figures go to docs/reliability.md.
SOAK_ARGS ?= --duration 600 --peers 200
soak: $(VENV)/.installed-test
	$(BIN)/python -m tests.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Desktop client targets (run-client, screenshots) live beside the UI.
include ui/ui.mk

# Benchmarks (make bench and friends) live beside them.
include bench/bench.mk
