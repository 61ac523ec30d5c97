# MLOps Workbook. `make lab` to learn, `make test` to check the workbook itself.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup lab test test-tooling test-notebooks lint stubs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: your progress board, then JupyterLab on the current exercise.
lab: setup
	$(BIN)/workbook lab

## Every quality gate (DESIGN.md): lint, stubs up to date, tooling tests,
## graders vs solutions / stubs / mutants, notebooks execute.
test: setup lint
	$(BIN)/workbook stubs --check
	$(BIN)/pytest tests -n 2
	$(MAKE) test-notebooks

test-notebooks: setup
	WORKBOOK_TARGET=solutions $(BIN)/pytest --nbval-lax notebooks -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

stubs: setup
	$(BIN)/workbook stubs

bench: setup
	$(BIN)/python benchmarks/bench_ce4_2_drift.py

clean:
	rm -rf $(VENV) .workbook
