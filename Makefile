# Two targets a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml setup.py otel_adaprof/instrumentation/profiler/_native_sampler.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install otel-adaprof with its dev tools

demo: $(STAMP) ## controller (SQLite) + demo service + load + adaptive session; report in ./adaprof-report
	$(BIN)/adaprof demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check otel_adaprof tests bench
	$(BIN)/ruff format --check otel_adaprof tests bench

typecheck: $(STAMP)
	$(BIN)/mypy otel_adaprof

# Two passes: what does not measure the machine on four workers, then the `timing` tests
# (CPU, samples, latency against a bound) one at a time (tests/conftest.py). Exit status 5
# is pytest's "no test selected" (ARGS naming tests of one kind only).
pytest: $(STAMP)
	$(BIN)/python -m pytest -m "not timing" -n 4 $(ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -m timing $(ARGS) || [ $$? -eq 5 ]

test: lint typecheck pytest ## ruff, mypy and the whole test suite

bench: $(STAMP) ## the insight-per-overhead benchmark, short setting
	$(BIN)/adaprof bench --quick $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
