# digitlab: `make lab` to learn, `make test` to check everything.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.digitlab-installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

.PHONY: setup data lab test lint unit notebooks course bench student clean

setup: $(STAMP)  ## create .venv and install digitlab with its test tools

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test,instructor]"
	touch $@

data: setup  ## make sure MNIST is present and verified (downloads it once)
	$(PY) -m digitlab data

lab: data  ## start JupyterLab on the course notebooks
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

lint: setup
	$(VENV)/bin/ruff check .

unit: setup
	DIGITLAB_FAST=1 $(PY) -m pytest tests

notebooks: setup  ## execute every notebook in fast mode and check it (nbval)
	DIGITLAB_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env notebooks/ ; \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "no notebooks to check"; else exit $$rc; fi

test: lint unit notebooks  ## ruff, the unit tests, then every notebook in fast mode

course: data  ## execute every notebook in full mode, in place (the committed outputs)
	for nb in $(NOTEBOOKS); do \
	  DIGITLAB_FAST=0 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=-1 $$nb || exit 1; done

bench: data  ## training and inference benchmarks on this machine (writes benchmarks/RESULTS.md)
	$(PY) -m digitlab.bench

student: setup  ## student versions of the notebooks, solutions removed, in build/student/
	$(PY) -m digitlab.student

clean:
	rm -rf build .pytest_cache .ruff_cache
