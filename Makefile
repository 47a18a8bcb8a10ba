# The two commands: `make demo` and `make test`. Both create the virtualenv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench up down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/gptforge demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m pip install -q -e ".[bench]"
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

up: install
	$(BIN)/gptforge up

down:
	$(BIN)/gptforge down

clean:
	rm -rf $(VENV) .state data
