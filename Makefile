# `make run` and `make test` do all set-up on a fresh machine (venv + install), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= 20
DEMO_VMS ?= 40

.PHONY: install run test lint typecheck unit bench clean

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

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

bench: install
	$(BIN)/poolvisor bench placement --hosts 100000 --requests 100000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
