# Two entry points: `make run` (install + launch the app) and `make test` (install + lint + tests).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: run test test-all lint cli samples bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/maskpix

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

test-all: lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m ''

samples: $(STAMP)
	$(PY) scripts/make_samples.py

# Lab bundle: dist/maskpix/ (PyInstaller, build.spec), then its self-tests; see README "Lab machines".
bundle: $(STAMP)
	VENV=$(VENV) bash scripts/build_bundle.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
