# The two commands: `make demo` (set up + main job) and `make test` (set up + tests).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV) dev

setup: $(VENV)/.installed

demo: setup
	$(PY) -m diffusio list
	$(PY) -m diffusio demo

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: setup
	bash scripts/setup_env.sh $(VENV) dev,bench
	$(PY) benchmarks/samplers.py

clean:
	rm -rf $(VENV) runs .pytest_cache
