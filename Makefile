# digitlab: `make lab` to learn, `make test` to check everything.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.digitlab-installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
# The exact versions CI tested; `make setup CONSTRAINTS=` installs the newest that pyproject.toml allows.
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# Where PyTorch comes from: empty for PyPI (on Linux the CUDA build, about 6 GB with its libraries), or
# https://download.pytorch.org/whl/cpu for the CPU-only build (under 1 GB).
TORCH_INDEX ?=

.PHONY: setup data lab test test-oldest lint course bench bench-grading bad-input student assignments grade book pad-runtime pad-model clean

setup: $(STAMP)  ## create .venv and install digitlab with its test, instructor, ONNX and book extras

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install $(PIN) --index-url $(TORCH_INDEX) torch torchvision)
	$(PY) -m pip install $(PIN) -e ".[test,instructor,onnx,book]"
	touch $@

data: setup  ## make sure MNIST is present and verified (downloads it once)
	$(PY) -m digitlab data

lab: data  ## start JupyterLab on the course notebooks (the learner's lab: no instructor tools, see jupyter/)
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter $(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

lint: setup
	$(VENV)/bin/ruff check .

test: lint  ## ruff, then the unit tests and every notebook in fast mode (nbval), in one pytest run
	DIGITLAB_FAST=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env --durations=15

# The notebooks that need what a floor can break beyond the unit tests: matplotlib's fonts, the ONNX export, the
# course network trained, saved and loaded by that PyTorch (03 trains it and types digits, 06 uses all three).
OLDEST_NOTEBOOKS := notebooks/03_training.ipynb notebooks/06_realtime_recognition.ipynb

test-oldest:  ## the unit tests and the notebooks in OLDEST_NOTEBOOKS (fast mode) with the oldest versions pyproject.toml allows (constraints-oldest.txt), in .venv-oldest
	test -x .venv-oldest/bin/python || $(PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/python -m pip install --upgrade pip
	.venv-oldest/bin/python -m pip install -c constraints-oldest.txt -e ".[test,instructor,onnx,book]"
	DIGITLAB_FAST=1 .venv-oldest/bin/python -m pytest tests $(OLDEST_NOTEBOOKS) --nbval-lax --nbval-current-env --durations=15

course: data  ## execute every notebook in full mode, in place (the committed outputs)
	for nb in $(NOTEBOOKS); do \
	  DIGITLAB_FAST=0 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=-1 $$nb || exit 1; done

bench: data  ## training and inference benchmarks on this machine (benchmarks/RESULTS.md, INFERENCE.md)
	$(PY) -m digitlab.bench
	$(PY) -m digitlab.infer_bench

bad-input: data  ## the bad-input probe: 160 cases of what a careless or hostile user hands every entry point (benchmarks/BAD_INPUT.md; as root)
	$(PY) benchmarks/bad_input_probe.py

bench-grading: data  ## the grading benchmark: a generated class graded before and now, 1 and 2 workers (benchmarks/GRADING.md)
	$(PY) -m digitlab.grading_bench

student: setup  ## student versions of the notebooks, solutions removed, in build/student/
	$(PY) -m digitlab.student

assignments: data  ## the nbgrader course in build/course/: one assignment per notebook with exercises, released
	$(PY) -m digitlab.assignments

grade: setup  ## autograde every new or changed submission of ASSIGNMENT, each sealed off: make grade ASSIGNMENT=training [WORKERS=2]
	$(if $(ASSIGNMENT),,$(error say which assignment: make grade ASSIGNMENT=training (the names: ls build/course/release)))
	$(PY) -m digitlab.assignments grade $(ASSIGNMENT) $(if $(WORKERS),--workers $(WORKERS))

# The website's drawing pad: ONNX Runtime Web as book/pad/package-lock.json pins it (npm ci, from the npm registry).
PAD_RUNTIME := book/pad/node_modules/.package-lock.json

pad-runtime: $(PAD_RUNTIME)

$(PAD_RUNTIME): book/pad/package-lock.json
	cd book/pad && npm ci --no-audit --no-fund

pad-model: data  ## after the course network changes: refresh book/pad/model.json (the pad's network on MNIST test)
	$(PY) -m digitlab.webpad

book: setup pad-runtime  ## the course as a website in build/book/html, from the committed notebooks and the course network (nothing is trained or executed)
	$(PY) -m sphinx -b html -c book -d build/book/doctrees -W --keep-going -q . build/book/html
	@echo "The course website: python3 -m http.server -d build/book/html, then open http://localhost:8000/"

clean:  ## remove build/ (student versions, the nbgrader course and its gradebook, the website) and the caches
	rm -rf build .pytest_cache .ruff_cache
