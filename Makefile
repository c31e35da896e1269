# digitlab: `make lab` to learn, `make test` to check everything.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.digitlab-installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

.PHONY: setup data lab test lint course bench student assignments clean

setup: $(STAMP)  ## create .venv and install digitlab with its test, instructor and ONNX extras

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test,instructor,onnx]"
	touch $@

data: setup  ## make sure MNIST is present and verified (downloads it once)
	$(PY) -m digitlab data

lab: data  ## start JupyterLab on the course notebooks
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

lint: setup
	$(VENV)/bin/ruff check .

test: lint  ## ruff, then the unit tests and every notebook in fast mode (nbval), in one pytest run
	DIGITLAB_FAST=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env

course: data  ## execute every notebook in full mode, in place (the committed outputs)
	for nb in $(NOTEBOOKS); do \
	  DIGITLAB_FAST=0 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=-1 $$nb || exit 1; done

bench: data  ## training and inference benchmarks on this machine (benchmarks/RESULTS.md, INFERENCE.md)
	$(PY) -m digitlab.bench
	$(PY) -m digitlab.infer --bench

student: setup  ## student versions of the notebooks, solutions removed, in build/student/
	$(PY) -m digitlab.student

assignments: data  ## the nbgrader course in build/course/: one assignment per notebook with exercises, released
	$(PY) -m digitlab.assignments

clean:  ## remove build/ (student versions, the nbgrader course and its gradebook) and the caches
	rm -rf build .pytest_cache .ruff_cache
