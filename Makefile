# embedscope: `make demo` and `make test` work on a fresh machine with python3 >= 3.10.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo-output

.PHONY: demo test install lint bench-pca clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Reduce the built-in 10,000 x 50 mixture with UMAP, then plot it.
demo: $(STAMP)
	$(BIN)/embedscope reduce builtin:mixture --method umap --random-state 0 --out $(DEMO)/coords.parquet --force
	$(BIN)/embedscope plot $(DEMO)/coords.parquet --color label --out $(DEMO)/plot.png --force
	$(BIN)/embedscope plot $(DEMO)/coords.parquet --color label --out $(DEMO)/plot.html --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench-pca: $(STAMP)
	$(BIN)/python benchmarks/pca.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache build *.egg-info
