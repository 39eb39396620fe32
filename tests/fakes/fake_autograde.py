"""A stand-in for nbgrader's entry point in ``nbgrader autograde ASSIGNMENT --student S
--force`` (tests/test_classrun.py runs it with CNN_GRADER_AUTOGRADE_ENTRY=fake_autograde:main).

What it does for a student is written in ``plan/<student>`` of the course folder (its
working directory): ``ok`` prints the INFO line the course's autograde logs and records
the student in ``graded.txt``; ``fail`` ends like nbgrader when the grader itself fails;
``kill-worker`` kills the Ray worker that runs it on the first attempt (then acts as
``ok``); ``sleep`` records its pid and its parent's (the forkserver) in ``pids/`` and
sleeps; ``train`` trains the pickled graph in ``plan/<student>.graph`` with the grader's
``checks.trained`` (as VGG16, ci) and reports its training counters.
"""
import os
import signal
import sys
import time
from pathlib import Path


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def main() -> None:
    _nbgrader, _autograde, assignment, _flag, student, _force = sys.argv[:6]
    plan = Path("plan", student).read_text().strip()
    attempts = len(Path("logs", assignment, f"{student}.attempts").read_text().splitlines())
    if plan == "kill-worker" and attempts == 1:
        os.kill(parent_of(os.getppid()), signal.SIGKILL)  # forkserver's parent: the worker
        time.sleep(60)
    if plan == "sleep":
        Path("pids").mkdir(exist_ok=True)
        Path("pids", student).write_text(str(os.getpid()))
        Path("pids", f"{student}.parent").write_text(str(os.getppid()))
        time.sleep(600)
    if plan == "fail":
        print("[AutogradeApp | ERROR] There was an error processing assignment: grader crashed")
        sys.exit(1)
    training = "1 cached, 1 trained in 4.5 s"
    if plan == "train":
        training = trained(student)
    with open("graded.txt", "a") as record:
        record.write(student + "\n")
    print("[AutogradeApp | INFO] graded with profile ci: kernel 1.5 s and description 2.5 s "
          f"(side by side), hidden checks 3.5 s; 10 of 10 parts passed; training: {training}")


def trained(student: str) -> str:
    """Train as the accuracy part does; the counters as the INFO line gives them."""
    import logging
    import pickle

    from cnn_grader import training_cache
    from cnn_grader.hidden_checks import checks
    from cnn_grader.paper import get_spec

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    graph = pickle.loads(Path("plan", f"{student}.graph").read_bytes())
    checks.trained(get_spec("vgg16"), graph, "ci")
    hits, misses = training_cache.counts()
    return f"{hits} cached, {misses} trained in {training_cache.training_seconds():.1f} s"
