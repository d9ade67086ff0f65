# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test reliability lint install-check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lazada-worker demo

# Three test processes on two cores: most tests wait on workers and sandboxes, and with fewer the
# suite left CI too little of its time limit; the slowest tests are listed, to see where it goes.
# The reliability stage stops services: one process.
test: $(STAMP)
	$(VENV)/bin/pytest -n 3 --durations=25

reliability: $(STAMP)
	$(VENV)/bin/pytest -m reliability -s

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy worker tasks celeryconfig.py

# A fresh venv with the runtime extras only, and a worker on Redis and one on RabbitMQ
# (needs the LAZADA_TEST_*_URL variables; .ci/run sets them).
install-check:
	bash .ci/install-check

# Every benchmark scenario briefly, figures printed (bench/RESULTS.md has the full runs).
bench: $(STAMP)
	$(VENV)/bin/python -m bench quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
