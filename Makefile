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

# Real data that ships with scikit-learn (1,797 handwritten digits, 8 x 8 pixels): UMAP and
# t-SNE side by side, labelled; a PNG, a static HTML page and a zoomable tile site.
demo: $(STAMP)
	$(BIN)/embedscope reduce builtin:digits --method umap --random-state 0 --out $(DEMO)/digits-umap.parquet --force
	$(BIN)/embedscope reduce builtin:digits --method tsne --random-state 0 --out $(DEMO)/digits-tsne.parquet --force
	$(BIN)/embedscope compare $(DEMO)/digits-umap.parquet $(DEMO)/digits-tsne.parquet --color label --labels-from label --out $(DEMO)/umap-vs-tsne.png --force
	$(BIN)/embedscope plot $(DEMO)/digits-umap.parquet --color label --labels-from label --out $(DEMO)/plot.png --force
	$(BIN)/embedscope plot $(DEMO)/digits-umap.parquet --color label --labels-from label --out $(DEMO)/plot.html --force
	$(BIN)/embedscope plot $(DEMO)/digits-umap.parquet --color label --labels-from label --tiles --max-zoom 3 --out $(DEMO)/site --force
	@echo "demo: open $(DEMO)/umap-vs-tsne.png, $(DEMO)/plot.png, $(DEMO)/plot.html and $(DEMO)/site/index.html"

# Test files spread over up to 4 processes (pytest-xdist): most of the suite waits on
# subprocesses, the CUDA simulator or a browser, one core at a time. A file stays in one
# process, so its servers and fixtures are built once. `pytest -q` alone runs serially.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench-pca: $(STAMP)
	$(BIN)/python benchmarks/pca.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache build *.egg-info
