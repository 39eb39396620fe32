"""An entry point for cnn_grader/autograde_fork.py's tests: ``sys.argv[1]`` says what to do.

``report`` prints what the process is (folder, argv, environment, session) and returns;
``exit N`` ends with status N; ``raise`` raises; ``sleep`` writes its pid to ``pid`` and
sleeps.
"""
import os
import sys
import time
from pathlib import Path


def main() -> None:
    what = sys.argv[1]
    if what == "report":
        print(f"cwd={os.getcwd()} argv={sys.argv[1:]} probe={os.environ.get('PROBE')} "
              f"leader={os.getsid(0) == os.getpid() == os.getpgid(0)} "
              f"environment={sorted(os.environ)}")
        print("to stderr", file=sys.stderr)
    elif what == "exit":
        sys.exit(int(sys.argv[2]))
    elif what == "raise":
        raise RuntimeError("the probe failed")
    elif what == "sleep":
        Path("pid").write_text(str(os.getpid()))
        time.sleep(600)
