# `make run` and `make test` do all set-up on a fresh machine (venv + install), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= 20
DEMO_VMS ?= 40

.PHONY: install run test test-all lint typecheck unit unit-all bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all]'
	if pkg-config --exists libvirt 2>/dev/null; then $(BIN)/pip install -q -e '.[all,libvirt]'; fi
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/poolvisor serve --demo $(DEMO) --demo-vms $(DEMO_VMS)

lint: install
	$(BIN)/ruff check src tests benchmarks

typecheck: install
	$(BIN)/mypy

# Two runs: everything but the serial tests on $(JOBS) pytest-xdist workers (one file per worker at a
# time: module fixtures start once), then the serial ones (tests/serial.txt: load runs, kill -9 under
# load, the real-host lab) alone, one at a time. Both always run; the target fails if either does.
# Bytecode caching on: the tests start hundreds of `poolvisor` processes, each would recompile src/.
# The default run leaves out the tests marked slow (whole-day trace replays, 60 s load runs);
# each has a bounded sibling that runs here. `make test-all` runs everything.
JOBS   ?= 2
SERIAL_PATHS = $(shell sed -e '/^\#/d' -e 's/::.*//' tests/serial.txt | sort -u)

define two_runs
	unset PYTHONDONTWRITEBYTECODE; rc=0; \
	$(BIN)/pytest -q -m "$(1)not serial" -n $(JOBS) --dist loadfile --durations=25 || rc=$$?; \
	$(BIN)/pytest -q -m "$(1)serial" --durations=25 $(SERIAL_PATHS) || rc=$$?; \
	exit $$rc
endef

unit: install
	$(call two_runs,not slow and )

unit-all: install
	$(call two_runs,)

test: lint typecheck unit

test-all: lint typecheck unit-all

bench: install
	$(BIN)/poolvisor bench placement --hosts 100000 --requests 100000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
