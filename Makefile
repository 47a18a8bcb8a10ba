# The two commands: `make demo` and `make test`. Both create the virtualenv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PyTorch is installed first, pinned, so the `torch>=2.4` requirement is already met and pip never swaps in another
# build: where a CPU wheel of this version is cached locally pip takes it; elsewhere PyPI's default Linux build
# (CUDA-enabled, works on CPU too). Pick another build with e.g.
#   make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install demo test bench up down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
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
