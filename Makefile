# Two entry points: `make run` (install + launch the app) and `make test` (install + lint + tests).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: run test test-all test-numerics lint cli samples bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test,train]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/maskpix

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest --durations=15

# The numerics-sensitive tests under another CPU kernel set (see tests/core/test_portable_numerics.py).
NUMERICS_TESTS = tests/core/test_portable_numerics.py tests/core/test_metrics.py tests/core/test_blend.py tests/core/test_editor.py \
	tests/core/test_segmenter.py tests/core/test_sam_decoder.py tests/core/test_masks.py
test-numerics: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(PY) -c \
		"import torch; print('numerics rerun on CPU kernels:', torch.backends.cpu.get_cpu_capability())"
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MASKPIX_EXPECT_CPU_CAPABILITY=AVX2 \
		QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(NUMERICS_TESTS)

test-all: lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m ''

samples: $(STAMP)
	$(PY) scripts/make_samples.py

# Lab bundle: dist/maskpix/ (PyInstaller, build.spec) from requirements/bundle.lock in its own venv
# (.venv-bundle), then its self-tests. `make bundle REFRESH_LOCK=1`: today's versions, and the new lock is
# kept only if the self-tests pass. See README "Lab machines".
bundle:
	PYTHON=$(PYTHON) bash scripts/build_bundle.sh $(if $(REFRESH_LOCK),--refresh-lock)

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
