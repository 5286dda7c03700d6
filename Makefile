# Quick start: `make demo` (set up + segment the built-in example) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spineseg-installed
DEMO_OUT ?= demo-output

.PHONY: install demo test lint format clean

$(STAMP): pyproject.toml constraints.txt $(wildcard SpineInstanceSeg/Logic/spineinstanceseg/requirements/*.txt)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,batch,slicer]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spineseg demo $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
