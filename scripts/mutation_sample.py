"""Mutation testing of the grader's rule modules on a random sample of mutants.

    .venv/bin/python scripts/mutation_sample.py --sample 60 --seed 1   # or: make mutation

mutmut (configuration in setup.cfg) makes about 2,500 mutants of
``cnn_grader/hidden_checks/checks.py`` and ``cnn_grader/netgraph/analysis.py``; each runs
the rule tests that reach its function, up to several minutes, which is days on a
2-core machine. This script asks mutmut for a seeded random sample instead
(``--sample 0``: every mutant) and prints the sample's score, with a 95 % Wilson
interval for the score of all mutants, and the surviving mutants' names
(``.venv/bin/mutmut show NAME`` prints the change). grader/CHECKS.md records the runs.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = Path(sys.executable).parent / "mutmut"
META = ("cnn_grader/hidden_checks/checks.py.meta", "cnn_grader/netgraph/analysis.py.meta")
DETECTED = {"killed", "timeout", "segfault"}  # mutmut's statuses: a test noticed
UNDETECTED = {"survived", "no tests"}


def mutants() -> dict[str, int | None]:
    """Every mutant mutmut generated, with its last result (None: not run)."""
    found: dict[str, int | None] = {}
    for meta in META:
        path = ROOT / "mutants" / meta
        found.update(json.loads(path.read_text())["exit_code_by_key"])
    return found


def generate() -> None:
    """Let mutmut generate the mutants (and its statistics) without running any: it stops
    at a filter that matches nothing."""
    subprocess.run([str(MUTMUT), "run", "no-mutant-has-this-name"], cwd=ROOT,
                   capture_output=True, text=True, check=False)
    if not all((ROOT / "mutants" / meta).is_file() for meta in META):
        raise SystemExit("mutmut generated no mutants: run `.venv/bin/mutmut run` to see why")


def wilson(killed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if total == 0:
        return 0.0, 1.0
    p = killed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=60, help="mutants to run (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)
    generate()
    names = sorted(mutants())
    chosen = (names if args.sample <= 0 or args.sample >= len(names)
              else sorted(random.Random(args.seed).sample(names, args.sample)))
    print(f"{len(chosen)} of {len(names)} mutants (seed {args.seed})", flush=True)
    subprocess.run([str(MUTMUT), "run", "--max-children", str(args.max_children), *chosen],
                   cwd=ROOT, check=False)
    from mutmut.stats import status_by_exit_code

    results = mutants()
    status = {name: status_by_exit_code[results.get(name)] for name in chosen}
    detected = [n for n, s in status.items() if s in DETECTED]
    judged = [n for n, s in status.items() if s in DETECTED | UNDETECTED]
    low, high = wilson(len(detected), len(judged))
    print(f"detected {len(detected)} of {len(judged)} "
          f"({len(detected) / max(len(judged), 1):.0%}); all {len(names)} mutants: "
          f"{low:.0%} to {high:.0%} (95 % Wilson interval)")
    for name, state in sorted(status.items()):
        if state not in DETECTED:
            print(f"{state}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
