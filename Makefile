# anstoss — every target creates or updates the virtual environment itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench soak proto lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## the main job end to end on embedded defaults
	$(BIN)/anstoss demo

test: $(STAMP)  ## the whole test suite
	$(BIN)/python -m pytest

bench: $(STAMP)  ## benchmarks; figures also in benchmarks/results.json
	$(BIN)/python -m benchmarks.run

soak: $(STAMP)  ## 10-minute soak of a real server: RSS, WAL, errors; figures in benchmarks/results.json
	$(BIN)/python -m benchmarks.soak

proto: $(STAMP)  ## regenerate engine/server/_generated from proto/
	rm -rf engine/server/_generated
	$(BIN)/python proto/generate.py engine/server/_generated

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
