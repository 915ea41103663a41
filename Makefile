# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned to the CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test browser bench lint install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/avfed run recipe=simclr_cluttered

test: $(VENV)/.installed-dev browser
	$(BIN)/python -m pytest

# The CardioLive page is tested in a real headless Chromium: install Debian's chromium and
# chromium-driver when they are missing and apt-get can (as root, or with password-less
# sudo); otherwise that one test is skipped and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif ! command -v apt-get >/dev/null; then echo "no apt-get: the browser test will be skipped"; \
	else S=""; [ "$$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && S=sudo; } ; \
	  if [ "$$(id -u)" = 0 ] || [ -n "$$S" ]; then \
	    $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq \
	      chromium chromium-driver || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "not root and no sudo: the browser test will be skipped"; fi; fi

bench: $(VENV)/.installed-dev
	$(BIN)/pip install -e '.[bench]'
	$(BIN)/python benchmarks/fl_overhead.py
	$(BIN)/python benchmarks/backbones.py
	$(BIN)/python benchmarks/aggregation.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
