"""An entry point for cnn_grader/autograde_fork.py's tests: ``sys.argv[1]`` says what to do.

``report`` prints what the process is (folder, argv, environment, session, torch's
threads) and returns;
``exit N`` ends with status N; ``raise`` raises; ``sleep`` writes its pid to ``pid`` and
sleeps.
"""
import os
import sys
import time
from pathlib import Path

import torch  # preloaded by the forkserver, as nbgrader's torch is

# A forkserver's torch that settled on its thread count when it was imported (as it does
# in a Ray worker, where OMP_NUM_THREADS=1): a fork must still use the count it is given.
torch.set_num_threads(3)


def main() -> None:
    what = sys.argv[1]
    if what == "report":
        print(f"cwd={os.getcwd()} argv={sys.argv[1:]} probe={os.environ.get('PROBE')} "
              f"leader={os.getsid(0) == os.getpid() == os.getpgid(0)} "
              f"environment={sorted(os.environ)} threads={torch.get_num_threads()} "
              f"grader={[m for m in sys.modules if m.startswith(('cnn_grader', 'cnn_course'))]}")
        print("to stderr", file=sys.stderr)
    elif what == "exit":
        sys.exit(int(sys.argv[2]))
    elif what == "raise":
        raise RuntimeError("the probe failed")
    elif what == "sleep":
        Path("pid").write_text(str(os.getpid()))
        time.sleep(600)
