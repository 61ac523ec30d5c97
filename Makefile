# MLOps Workbook. `make lab` to learn, `make test` to check the workbook itself.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup provision lab test test-services test-notebooks lint stubs bench bench-services images doctor clean mutation mutation-all contract nbgrader release

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,services]'
	touch $(STAMP)

## The main job: your progress board, then JupyterLab on the current exercise.
## JupyterLab options go in ARGS: `make lab ARGS="--port=9000 --no-browser"`.
lab: setup
	$(BIN)/workbook lab $(ARGS)

## What `make test` needs besides the venv: on Debian/Ubuntu as root it installs the service
## packages, starts a Docker engine and builds the stand-in images; elsewhere it says in one
## sentence what to install, or which parts will be skipped (infra/provision.sh).
provision:
	PYTHON=$(PYTHON) infra/provision.sh system

## Every quality gate (DESIGN.md): lint, stubs up to date, tooling tests (graders vs
## solutions / stubs / mutants, service clean-up), service smoke suite, notebooks execute.
test: provision setup lint
	VENV=$(VENV) infra/provision.sh images
	$(BIN)/workbook stubs --check
	WORKBOOK_SERVICES=local $(BIN)/pytest tests -n 2 --ignore=tests/services --durations=15
	$(MAKE) test-services
	$(MAKE) test-notebooks

## The service smoke suite under each backend, and every grader on the solutions with
## docker services and sealed, as `workbook grade` runs them (the quality gates above ran
## them unsealed with local ones). Docker needs an
## engine and the images (`make images`); without one this part is skipped, never in CI.
test-services: setup
	$(BIN)/pytest tests/services --services=local -p no:cacheprovider
	@if docker info >/dev/null 2>&1 || [ -n "$$CI" ]; then \
		$(BIN)/pytest tests/services --services=docker -p no:cacheprovider && \
		$(BIN)/pytest graders --target=solutions --services=docker --sealed -p no:cacheprovider; \
	else echo "docker part skipped: no Docker engine answers (see infra/images/README.md)"; fi

test-notebooks: setup
	WORKBOOK_TARGET=solutions $(BIN)/pytest -p nbval --nbval-lax notebooks -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

stubs: setup
	$(BIN)/workbook stubs

bench: setup
	$(BIN)/python benchmarks/bench_ce4_2_drift.py

bench-services: setup
	$(BIN)/python benchmarks/bench_services.py

## Automatic mutation testing of one solution (slow; not part of `make test`):
## `make mutation ID=ce4_2 [JOBS=2]`. Report in benchmarks/results/mutation_<id>.json.
mutation: setup
	@test -n "$(ID)" || { echo "usage: make mutation ID=<exercise id> [JOBS=2]"; exit 2; }
	$(BIN)/workbook dev mutation $(ID) --jobs $(or $(JOBS),1)

mutation-all: setup
	$(BIN)/workbook dev mutation all --jobs $(or $(JOBS),1)

## The contract clauses of one exercise and the checks covering each: `make contract ID=ce4_2`.
contract: setup
	@test -n "$(ID)" || { echo "usage: make contract ID=<exercise id>"; exit 2; }
	$(BIN)/workbook dev contract $(ID)

## The instructor's nbgrader course (OUT=nbgrader_build by default), graded by this checkout:
## then `cd nbgrader_build && nbgrader generate_assignment ce4_2` (workbook/nbgrader_course.py).
nbgrader: setup
	$(BIN)/workbook nbgrader build --out $(or $(OUT),nbgrader_build)

## The repository a learner receives: no solutions, no hidden checks (`make release OUT=DIR`).
release: setup
	@test -n "$(OUT)" || { echo "usage: make release OUT=<a new folder>"; exit 2; }
	$(BIN)/workbook release $(OUT)

images: setup
	$(BIN)/workbook images build

doctor: setup
	$(BIN)/workbook doctor

clean:
	rm -rf $(VENV) .workbook
