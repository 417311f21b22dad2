# fgmd developer entry points. `make demo` and `make test` set everything up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are pinned to the releases this project is tested with; constraints.txt
# pins every other dependency to the versions the test suite last passed with.
TORCH := torch==2.14.1 torchvision==0.29.1
# Where pip finds torch/torchvision. The default (PyPI) wheels bundle ~4 GB of CUDA libraries;
# on a CPU-only machine `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes
# PyTorch's CPU-only builds instead (README, "Set-up").
TORCH_INDEX ?=

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) -c constraints.txt
	$(PY) -m pip install -e ".[search,onnx,tiff,report,serve,test,lint]" -c constraints.txt
	touch $@

demo: setup
	$(VENV)/bin/fgmd demo --out runs/demo

test: setup
	$(PY) -m pytest -q

# ruff (lint + format check) and mypy, configured in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
