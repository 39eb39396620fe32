# Two commands set the course up: `make lab` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: lab test data bundle benchmark clean

# (Re)install when .venv is missing or older than the requirements.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Full FashionMNIST into data/ (data folder, Debian package, or download).
data: $(STAMP)
	$(BIN)/python -m cnn_course --best-effort

# LAB_ARGS passes extra options, e.g. LAB_ARGS="--no-browser --port=8899".
# Root (as in containers and CI) needs --allow-root.
lab: data
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# The whole suite on the committed subset: unit tests, every lecture and solution
# notebook under nbval, and the grader end to end.
test: data
	CNN_COURSE_PROFILE=ci PYTHONPATH=$(CURDIR)/grader $(BIN)/python -m pytest tests --nbval --nbval-current-env lectures solutions

bundle: $(STAMP)
	$(BIN)/python scripts/build_student_bundle.py build/student

benchmark: data
	$(BIN)/python scripts/benchmark_pipeline.py

clean:
	rm -rf $(VENV) build
