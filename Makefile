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

# the default run leaves out the tests marked slow (whole-day trace replays, 60 s load runs);
# each has a bounded sibling that runs here. `make test-all` runs everything.
unit: install
	$(BIN)/pytest -q -m "not slow" --durations=25

unit-all: install
	$(BIN)/pytest -q

test: lint typecheck unit

test-all: lint typecheck unit-all

bench: install
	$(BIN)/poolvisor bench placement --hosts 100000 --requests 100000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
