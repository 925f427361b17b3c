# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/convspec zoo
	$(BIN)/convspec summary alexnet_paper
	$(BIN)/convspec check specs/*.yaml

# pytest exits 5 when it collects nothing; that must fail, and it does (any non-zero fails make).
test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_cli.py

# Regenerate the registry-derived files (schema and the layer table in docs/spec.md).
docs: $(STAMP)
	$(BIN)/python -m compiler.docgen --write

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
