"""The pip and conda set-ups name the same packages and versions; in CI (`.ci/run`,
`CI=true`) a missing system dependency fails the run instead of skipping tests."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require

ROOT = Path(__file__).resolve().parent.parent


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.fullmatch(r"\s*(?:-\s+)?([A-Za-z0-9_.-]+)==([^\s#]+)\s*", line)
        if match:
            found[match[1].lower()] = match[2]
    return found


def test_environment_yml_matches_requirements():
    pip = pins((ROOT / "requirements.txt").read_text().splitlines())
    conda_lines = (ROOT / "environment.yml").read_text().split("- pip:", 1)[1].splitlines()
    assert pip and pins(conda_lines) == pip
    for needed in ("jupyterlab", "torch", "torchvision", "nbgrader", "nbval", "matplotlib",
                   "pytest", "tqdm"):
        assert needed in pip


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_require_fails_in_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true.*missing: apt-get install x"):
        require("apt-get install x")


@pytest.mark.parametrize("value", [None, "", "false"])
def test_require_skips_elsewhere_saying_what_to_install(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="^apt-get install x$"):
        require("apt-get install x")


def ci_run(tmp_path: Path, apt_get: str, env: dict[str, str] | None = None):
    """.ci/run in a copy of the repository whose only programs are fakes: no bwrap nor
    Chromium, `apt-get` runs the shell code `apt_get`, `make` records its arguments and CI."""
    repo, bin_ = tmp_path / "repo", tmp_path / "bin"
    (repo / ".ci").mkdir(parents=True)
    bin_.mkdir()
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    for program in ("dirname", "mktemp", "tail", "rm", "env", "chmod"):
        (bin_ / program).symlink_to(shutil.which(program))
    fakes = {"id": "echo 0", "apt-get": apt_get,
             "make": f'echo "make $* CI=$CI" >> {tmp_path / "made"}'}
    for name, code in fakes.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{code}\n")
        (bin_ / name).chmod(0o755)
    result = subprocess.run(["/bin/bash", str(repo / ".ci" / "run")], capture_output=True,
                            text=True, env={"PATH": str(bin_), **(env or {})}, timeout=60)
    made = tmp_path / "made"
    return result, made.read_text() if made.exists() else None


def test_ci_run_fails_when_apt_fails(tmp_path):
    apt_get = 'echo "E: Unable to locate package chromium-driver" >&2; exit 100'
    result, made = ci_run(tmp_path, apt_get)
    assert result.returncode != 0 and made is None
    assert "E: Unable to locate package chromium-driver" in result.stderr
    assert "apt-get failed to install bubblewrap chromium chromium-driver" in result.stderr


def test_ci_run_fails_when_apt_installs_nothing(tmp_path):
    result, made = ci_run(tmp_path, "exit 0")
    assert result.returncode != 0 and made is None
    assert "still missing after apt-get install" in result.stderr
    assert "bwrap chromium chromedriver" in result.stderr


def test_ci_run_installs_then_runs_both_test_tiers_with_ci_true(tmp_path):
    install = ('[ "$1" = install ] || exit 0\n'  # puts the three programs next to itself
               'for p in bwrap chromium chromedriver; do\n'
               '  printf "#!/bin/bash\\n" > "$(dirname "$0")/$p"; chmod +x "$(dirname "$0")/$p"\n'
               'done')
    result, made = ci_run(tmp_path, install)
    assert result.returncode == 0, result.stderr
    assert made == "make test CI=true\nmake test-integration CI=true\n"
    result, made = ci_run(tmp_path / "again", install, env={"CI": "1"})  # a CI's own value stays
    assert result.returncode == 0, result.stderr
    assert made == "make test CI=1\nmake test-integration CI=1\n"
