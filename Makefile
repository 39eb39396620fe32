# Two commands set the course up: `make lab` and `make test` (see README.md).
# The set-up rules (venv, data, lab, clean) are the students' Makefile, included here.
CLEAN_EXTRA := build
include scripts/student/Makefile

.PHONY: test bundle benchmark

# The whole suite on the committed subset: unit tests, every lecture and solution
# notebook under nbval, and the grader end to end.
test: data
	@command -v bwrap >/dev/null || { echo "make test grades submissions in the grader's sandbox: install it with 'sudo apt-get install bubblewrap'"; exit 1; }
	CNN_COURSE_PROFILE=ci PYTHONPATH=$(CURDIR)/grader $(BIN)/python -m pytest tests --nbval --nbval-current-env lectures solutions

bundle: $(STAMP)
	$(BIN)/python scripts/build_student_bundle.py build/student

benchmark: data
	$(BIN)/python scripts/benchmark_pipeline.py
