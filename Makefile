# Two commands set the course up: `make lab` and `make test` (see README.md).
# The set-up rules (venv, data, lab, clean) are the students' Makefile, included here.
CLEAN_EXTRA := build
include scripts/student/Makefile

.PHONY: test test-integration check bundle benchmark grade report mutation

# Test-only packages (requirements-dev.txt, which includes the instructors'), on top of
# the course's.
DEV_STAMP := $(VENV)/.installed-dev
$(DEV_STAMP): requirements-dev.txt requirements-instructor.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

# The instructors' packages (requirements-instructor.txt: Ray, PostgreSQL's driver).
INSTRUCTOR_STAMP := $(VENV)/.installed-instructor
$(INSTRUCTOR_STAMP): requirements-instructor.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-instructor.txt
	touch $(INSTRUCTOR_STAMP)

# The suite runs on the committed subset, on two pytest-xdist workers, each module and
# notebook whole on one of them (tests/conftest.py). Two tiers:
# - `make test`: unit tests, every lecture and solution notebook under nbval, the rules,
#   the fairness corpus and `make lab` (README.md gives its time). coverage.py starts in
#   every Python process of the run (COVERAGE_PROCESS_START) and measures the grader's
#   rule modules only (.coveragerc); the report ends the run.
# - `make test-integration`: whole systems at work (tests marked `integration`): nbgrader
#   end to end, a class on Ray with a PostgreSQL gradebook, JupyterLab in Chromium.
# `make check` runs both, as CI does (.ci/run). Each ends with its 15 slowest steps, to
# keep `make test` well under 15 minutes.
PYTEST = CNN_COURSE_PROFILE=ci PYTHONPATH=$(CURDIR) $(BIN)/python -m pytest -n 2 \
  --dist loadscope --no-loadscope-reorder --durations=15
NEEDS_BWRAP = command -v bwrap >/dev/null || { echo "the tests grade submissions in the grader's sandbox: install it with 'sudo apt-get install bubblewrap'"; exit 1; }

test: data $(DEV_STAMP)
	@$(NEEDS_BWRAP)
	rm -rf build/coverage && mkdir -p build/coverage
	COVERAGE_PROCESS_START=$(CURDIR)/.coveragerc COVERAGE_FILE=$(CURDIR)/build/coverage/data \
	  $(PYTEST) -m "not integration" tests --nbval --nbval-current-env lectures solutions
	@echo "Branch coverage of the grader's rule modules (the tests' worker processes):"
	@export COVERAGE_FILE=$(CURDIR)/build/coverage/data; \
	  $(BIN)/coverage combine -q --rcfile=.coveragerc && $(BIN)/coverage report --rcfile=.coveragerc

test-integration: data $(DEV_STAMP)
	@$(NEEDS_BWRAP)
	$(PYTEST) -m integration tests

check: test test-integration

# Grade every submission in grader/submitted/ that is not graded yet, WORKERS students at
# a time, on Ray (README.md, "Grading a class"; more than one worker needs a PostgreSQL
# gradebook, NBGRADER_DB_URL). GRADE_ARGS passes more options, e.g. "--force".
WORKERS ?= 1
grade: data $(INSTRUCTOR_STAMP)
	$(BIN)/python -m cnn_grader.classrun --workers $(WORKERS) $(GRADE_ARGS)

# The class report: what the class got wrong, on one HTML page next to the gradebook
# (grader/report-assignment_cnn.html; README.md, "Grading a class"). Works after a
# partial run too.
report: $(INSTRUCTOR_STAMP)
	$(BIN)/python -m cnn_grader.class_report $(REPORT_ARGS)

# Mutation testing of the grader's rules on a seeded random sample of mutmut's mutants
# (scripts/mutation_sample.py; SAMPLE=0 runs all of them, days on 2 cores). Not part of
# `make test`; grader/CHECKS.md records the runs.
SAMPLE ?= 60
SEED ?= 1
mutation: $(DEV_STAMP)
	$(BIN)/python scripts/mutation_sample.py --sample $(SAMPLE) --seed $(SEED)

bundle: $(STAMP)
	$(BIN)/python scripts/build_student_bundle.py build/student

benchmark: data
	$(BIN)/python scripts/benchmark_pipeline.py
