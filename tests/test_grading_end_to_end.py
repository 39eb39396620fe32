"""nbgrader end to end on a scratch copy of the course: generate, autograde seven
submissions, read the gradebook, generate feedback and export grades (ci profile)."""
from __future__ import annotations

import copy
import csv
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from generate_assignment import ASSIGNMENT, NOTEBOOK, generate, make_course, nbgrader  # noqa: E402

from cnn_grader.environment import venv_first  # noqa: E402

pytestmark = pytest.mark.integration  # make test-integration

MASTER = ROOT / "solutions" / NOTEBOOK
CELL_TIMEOUT = 10  # seconds a cell may run in this test's kernel
DESCRIBE_SECONDS = 90  # seconds the sandbox may take to describe a submission here
TIME_BUDGET = 150  # seconds a submission's kernel and description may take here
SLOW_CELLS = 20  # cells of 9 s each at the end of `slow_cells`: 180 s, past the budget


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def cell_by_id(nb, grade_id: str):
    matches = [cell for cell in nb.cells if meta(cell).get("grade_id") == grade_id]
    assert len(matches) == 1, f"expected one cell {grade_id!r} in the notebook"
    return matches[0]


def without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines()
                     if not re.match(r"\s*### (BEGIN|END) SOLUTION", line))


def replace_once(source: str, old: str, new: str) -> str:
    assert source.count(old) == 1, f"{old!r} should occur once in the reference solution"
    return source.replace(old, new)


MASTER_NB = nbformat.read(MASTER, as_version=4)
POINTS = {meta(c)["grade_id"]: float(meta(c)["points"]) for c in MASTER_NB.cells
          if meta(c).get("grade") and not meta(c).get("solution")}
ALEXNET = {g for g in POINTS if g.startswith("alexnet_")}
VGG16 = {g for g in POINTS if g.startswith("vgg16_")}


def expected(zero: set[str]) -> dict[str, float]:
    return {g: (0.0 if g in zero else p) for g, p in POINTS.items()}


HOSTILE = """
import builtins, sys, torch
from torch import nn
real_import = builtins.__import__
class Anything:
    def __getattr__(self, name): return Anything()
    def __call__(self, *a, **k): return Anything()
def fake_import(name, *args, **kwargs):
    try:
        return real_import(name, *args, **kwargs)
    except Exception:
        return Anything()
builtins.__import__ = fake_import
count_parameters = lambda model: 62_378_344
trace = lambda *a, **k: []
sys.excepthook = lambda *a: None
get_ipython().showtraceback = lambda *a, **k: None
torch.Tensor.shape = property(lambda self: (8, 10))
class AlexNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)
    def forward(self, x):
        return self.fc(x.mean((2, 3)))
"""

READ_EVERYTHING = """
import os
print("walking the file system")
for path in ("../../../nbgrader_config.py", "../../../../cnn_cnn_grader/netgraph/description.py",
             "../../../gradebook.db", "../../../source/assignment_cnn/assignment_cnn.ipynb"):
    try:
        print(open(path, errors="replace").read())
    except OSError as error:
        print("cannot read", path, type(error).__name__)
for top in ("/work", "/root", "/home", "/tmp", "/srv", "/opt"):
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != ".venv"]
        for name in files:
            try:
                print(open(os.path.join(folder, name), errors="replace").read(300))
            except Exception:
                pass
"""

LRN_ALEXNET = """
import torch.nn.functional as F
class AlexNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2)
        self.norm = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
        self.fc1 = nn.Linear(256 * 6 * 6, 4096)
        self.fc2 = nn.Linear(4096, 4096)
        self.fc3 = nn.Linear(4096, num_classes)
        self.drop = nn.Dropout(0.5)
    def forward(self, x):
        x = self.pool(self.norm(F.relu(self.conv1(x))))
        x = self.pool(self.norm(F.relu(self.conv2(x))))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = self.pool(F.relu(self.conv5(x)))
        x = F.adaptive_avg_pool2d(x, (6, 6)).view(x.size(0), -1)
        x = self.drop(F.relu(self.fc1(x)))
        x = self.drop(F.relu(self.fc2(x)))
        return self.fc3(x)
"""

OTHER_STYLE_VGG16 = """
class VGG16(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.blocks = nn.ModuleList()
        for widths in ([64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3):
            layers = []
            for width in widths:
                layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU()]
                in_channels = width
            self.blocks.append(nn.Sequential(*layers))
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(512 * 49, 4096),
                                  nn.ReLU(inplace=True), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                                  nn.Dropout(), nn.Linear(4096, num_classes))
    def forward(self, x):
        for block in self.blocks:
            x = self.pool(block(x))
        return self.head(x)
"""

TORCHVISION_VGG16 = """
import torchvision
class VGG16(nn.Module):
    def __init__(self, in_channels=3, num_classes=1000):
        super().__init__()
        self.net = torchvision.models.vgg16(weights=None, num_classes=num_classes)
        self.net.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
    def forward(self, x):
        return self.net(x)
"""


# Edits of the reference's model cells, one per case.
def narrow_conv2(source: str) -> str:
    source = replace_once(source, "nn.Conv2d(96, 256", "nn.Conv2d(96, 128")
    return replace_once(source, "nn.Conv2d(256, 384", "nn.Conv2d(128, 384")


def relu_dropped(source: str) -> str:
    """conv1's ReLU computed in forward(), its result dropped."""
    source = replace_once(source, "stride=4),\n            nn.ReLU(inplace=True),\n",
                          "stride=4),\n")
    return replace_once(source, "x = self.features(x)",
                        "x = self.features[0](x)\n        torch.relu(x)  # result dropped\n"
                        "        x = self.features[1:](x)")


def pools_2x2(source: str) -> str:
    """Same shapes as the paper's 3x3/2 pools, another network."""
    return source.replace("nn.MaxPool2d(kernel_size=3, stride=2)",
                          "nn.MaxPool2d(kernel_size=2, stride=2)")


def hangs_in_training(source: str) -> str:
    return replace_once(source, "x = self.features(x)",
                        "while self.training:\n            pass\n        x = self.features(x)")


def warns_and_prints(source: str) -> str:
    return replace_once(source, "x = self.features(x)",
                        "import warnings; warnings.warn('careful')\n        print('forward!')\n"
                        "        x = self.features(x)")


def loops_forever(source: str) -> str:
    return "while True:\n    pass\n" + source


def memory_hog(source: str) -> str:
    """12 GiB: below the machine's 24 GiB, above the sandboxes' 10 GiB address space."""
    return "hog = bytearray(12 * 2**30)\n" + source


def exits(source: str) -> str:
    return "import os\nos._exit(3)\n" + source


def reads_beside(source: str) -> str:
    """A file submitted beside the notebook, read by a relative path."""
    return 'NOTE = open("notes.txt").read()\nassert NOTE == "my notes"\n' + source


def trains_after_class(source: str) -> str:
    """A long training loop after the class, in the same cell: interrupted, class kept."""
    return source + "\nimport time\nfor step in range(10**6):\n    time.sleep(0.01)\n"


PLANT_LINKS = """
import os, socket
# names that trusted code writes, chmods or copies after the kernel, pointed at the course
targets = {{"{notebook}": "../../../gradebook.db",
           ".classrun-graded": "../../../nbgrader_config.py",
           "feedback.html": "../../reference/{assignment}/{notebook}",
           "notes.txt": "../../../source/{assignment}/{notebook}"}}
for name, target in targets.items():
    if os.path.lexists(name):
        os.remove(name)
    os.symlink(target, name)
print("planted", sorted(os.listdir(".")))
for address in (("127.0.0.1", 10001), ("127.0.0.1", 8265), ("127.0.0.1", 6379)):
    try:
        socket.create_connection(address, timeout=2)
        print("REACH" + "ED", address)  # the page shows the source: its words differ
    except OSError as error:
        print("no network:", type(error).__name__)
"""


def submissions(released) -> dict[str, tuple[nbformat.NotebookNode, dict[str, float]]]:
    """Each student's notebook and the points each graded part must get."""
    reference = copy.deepcopy(released)
    for cell in reference.cells:
        if meta(cell).get("solution"):
            cell.source = without_markers(cell_by_id(MASTER_NB, meta(cell)["grade_id"]).source)

    def changed(grade_id: str, edit) -> nbformat.NotebookNode:
        notebook = copy.deepcopy(reference)
        cell = cell_by_id(notebook, grade_id)
        cell.source = edit(cell.source)
        return notebook

    def pair(alexnet_edit, vgg16_edit) -> nbformat.NotebookNode:
        """One notebook with a broken AlexNet and a broken VGG16 (one run for two cases)."""
        notebook = changed("alexnet_model", alexnet_edit)
        cell = cell_by_id(notebook, "vgg16_model")
        cell.source = vgg16_edit(cell.source)
        return notebook

    variants = changed("alexnet_model", lambda s: LRN_ALEXNET)
    cell_by_id(variants, "vgg16_model").source = OTHER_STYLE_VGG16
    hostile = changed("alexnet_model", lambda s: HOSTILE)
    cell_by_id(hostile, "vgg16_model").source = HOSTILE.replace("AlexNet", "VGG16")
    # Careless and curious: warns and prints in forward, duplicates a test cell, and a
    # cell of its own prints every file it can reach.
    careless = changed("alexnet_model", lambda s: reads_beside(warns_and_prints(s)))
    cell_by_id(careless, "vgg16_model").source = trains_after_class(
        cell_by_id(careless, "vgg16_model").source)
    twin = copy.deepcopy(cell_by_id(careless, "alexnet_parameters"))
    twin.id = "copied-test-cell"
    careless.cells.insert(careless.cells.index(cell_by_id(careless, "alexnet_logits")), twin)
    careless.cells.insert(careless.cells.index(cell_by_id(careless, "alexnet_model")) + 1,
                          nbformat.v4.new_code_cell(READ_EVERYTHING))

    # Untouched, a restored test fails; left as `pass` it would score full points.
    edited = copy.deepcopy(released)
    cell_by_id(edited, "alexnet_parameters").source = "pass"
    # AlexNet raises; VGG16 right, its deleted test cell is restored and passes.
    deleted = changed("alexnet_model", lambda s: "raise RuntimeError('not finished yet')\n" + s)
    deleted.cells.remove(cell_by_id(deleted, "vgg16_parameters"))

    # Twenty cells of 9 s after the last test: past the budget, skipped, full points.
    slow = copy.deepcopy(reference)
    slow.cells += [nbformat.v4.new_code_cell("import time\ntime.sleep(9)")
                   for _ in range(SLOW_CELLS)]
    # A cell that replaces what trusted code later writes by links into the course.
    planter = copy.deepcopy(reference)
    planter.cells.insert(planter.cells.index(cell_by_id(planter, "alexnet_model")),
                         nbformat.v4.new_code_cell(PLANT_LINKS.format(
                             notebook=NOTEBOOK, assignment=ASSIGNMENT)))

    conv2_parts = {"alexnet_parameters", "alexnet_feature_maps", "alexnet_accuracy"}
    return {
        "reference": (reference, expected(set())),
        "slow_cells": (slow, expected(set())),
        "plants_links": (planter, expected(set())),
        "hands_in_a_link": (copy.deepcopy(reference), expected(set())),
        "untouched_test_edited": (edited, expected(ALEXNET | VGG16)),
        "raises_test_deleted": (deleted, expected(ALEXNET)),
        "hostile": (hostile, expected(ALEXNET | VGG16)),
        "variants": (variants, expected(set())),
        "careless": (careless, expected(set())),
        "conv2_torchvision": (pair(narrow_conv2, lambda s: TORCHVISION_VGG16),
                              expected(conv2_parts | VGG16)),
        "relu_dropped_memory_hog": (pair(relu_dropped, memory_hog),
                                    expected({"alexnet_accuracy"} | VGG16)),
        "pools_2x2_exits": (pair(pools_2x2, exits),
                            expected({"alexnet_feature_maps", "alexnet_accuracy"} | VGG16)),
        # A forward() that hangs in training mode: its parameters are graded from the
        # constructor (the visible parameter test passes too); every part that runs it fails.
        "hangs_loops": (pair(hangs_in_training, loops_forever),
                        expected((ALEXNET - {"alexnet_parameters"}) | VGG16)),
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A graded scratch course: (course folder, {student: expected points})."""
    course = make_course(tmp_path_factory.mktemp("grading") / "course")
    config = course / "nbgrader_config.py"
    text = config.read_text()
    for setting, value in (("CELL_TIMEOUT = ", CELL_TIMEOUT),
                           ("DESCRIBE_SECONDS = ", DESCRIBE_SECONDS),
                           ("TIME_BUDGET = ", TIME_BUDGET)):
        assert setting in text
        text = re.sub(rf"^{setting}.*$", f"{setting}{value}", text, flags=re.M)
    config.write_text(text)
    released = nbformat.read(generate(course), as_version=4)
    plan = submissions(released)
    for student, (nb, _) in plan.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / NOTEBOOK)
    (course / "submitted" / "careless" / ASSIGNMENT / "notes.txt").write_text("my notes")
    (course / "submitted" / "hands_in_a_link" / ASSIGNMENT / "notes.txt").symlink_to(
        course / "nbgrader_config.py")
    truncated = course / "submitted" / "truncated" / ASSIGNMENT
    truncated.mkdir(parents=True)
    text = (course / "submitted" / "reference" / ASSIGNMENT / NOTEBOOK).read_text()
    (truncated / NOTEBOOK).write_text(text[:len(text) // 2])
    before = course_files(course)
    result = nbgrader(course, "autograde", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert course_files(course) == before, "grading changed a file of the course"
    assert "hands_in_a_link/assignment_cnn/notes.txt is a symbolic link to" in result.stderr
    assert (course / "refused" / "hands_in_a_link" / ASSIGNMENT / "notes.txt").is_symlink()
    points = {student: points for student, (_, points) in plan.items()}
    return course, {**points, "truncated": expected(ALEXNET | VGG16)}


def course_files(course: Path) -> dict[str, tuple[int, bytes]]:
    """Mode and bytes of every file that grading must leave alone: the configuration, the
    master, the release and every submission (links are moved aside, so not listed; the
    unreadable notebook is replaced by a stand-in on purpose)."""
    files = {}
    for path in sorted(course.rglob("*")):
        parts = path.relative_to(course).parts
        if path.is_file() and not path.is_symlink() and parts[0] in (
                "nbgrader_config.py", "source", "release", "submitted") and parts[:2] != (
                "submitted", "truncated"):
            files[str(path.relative_to(course))] = (path.stat().st_mode, path.read_bytes())
    return files


def test_master_has_graded_parts_for_both_models():
    assert ALEXNET and VGG16 and sum(POINTS.values()) > 0
    for part in ("parameters", "feature_maps"):
        assert f"alexnet_{part}" in POINTS


def test_every_part_gets_exactly_its_points(course):
    from nbgrader.api import Gradebook

    folder, plan = course
    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gradebook:
        for student, points in plan.items():
            notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores = {g.name: g.score for g in notebook.grades if g.name in POINTS}
            assert scores == points, f"{student}: got {scores}"


GRADER_SECRETS = ("BEGIN HIDDEN TESTS", "hidden_checks", "def test_parameters",
                  "MIN_TRAINING_DECREASE", "GradingRecipe", "threshold=", "describe_child",
                  "c.CourseDirectory", "SQLite format", "DescriptionError")
TRACEBACKS = ("most recent call last", "site-packages")
FEEDBACK = {  # student -> words their feedback must contain
    "reference": ["On a CPU (profile ci) this part checks", "computes the paper",
                  "How your notebook ran for grading", "no GPU and no network",
                  "each cell for at most 10 s and all of them for at most 150 s"],
    "conv2_torchvision": ["conv2", "expected", "torchvision.models"],
    "relu_dropped_memory_hog": ["without a ReLU", "MemoryError"],
    "pools_2x2_exits": ["max-pool 1", "3x3", "VGG16 cell"],
    "hangs_loops": ["in training mode did not finish in time", "VGG16 cell"],
    "truncated": ["could not read the notebook you submitted"],
    "raises_test_deleted": ["RuntimeError: not finished yet"],
    "slow_cells": ["time budget of 150 s was spent"],
    "plants_links": ["no network: "],
    "careless": ["walking the file system",  # the course's files, seen from the kernel's folder
                 "cannot read ../../../nbgrader_config.py FileNotFoundError",
                 "cannot read ../../../gradebook.db FileNotFoundError"],
}


def test_feedback_hides_the_grader_and_explains_failures(course):
    folder, plan = course
    result = nbgrader(folder, "generate_feedback", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [p for p in (folder / "feedback").rglob("*") if p.is_symlink()]
    for student in plan:  # besides the page, only what the student handed in, as handed in
        handed_in = folder / "submitted" / student / ASSIGNMENT
        given = folder / "feedback" / student / ASSIGNMENT
        for path in (p for p in given.rglob("*") if p.is_file() and p.suffix != ".html"):
            original = handed_in / path.relative_to(given)
            assert original.is_file() and original.read_bytes() == path.read_bytes(), path
    planter = (folder / "feedback" / "plants_links" / ASSIGNMENT / f"{ASSIGNMENT}.html")
    assert "REACHED" not in planter.read_text() and "no network" in planter.read_text()
    for student in plan:
        html = (folder / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        for secret in GRADER_SECRETS + (TRACEBACKS if student != "careless" else ()):
            assert secret not in html, f"{student}'s feedback shows {secret!r}"
        for words in FEEDBACK.get(student, []):
            assert words in html, f"{student}'s feedback does not say {words!r}"


def test_export_writes_every_students_total(course):
    folder, plan = course
    result = nbgrader(folder, "export", "--to", str(folder / "grades.csv"))
    assert result.returncode == 0, result.stdout + result.stderr
    with open(folder / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(plan)
    for student, points in plan.items():
        assert float(rows[student]["raw_score"]) == sum(points.values()), student
        assert float(rows[student]["max_score"]) == sum(POINTS.values())


def test_the_class_report_agrees_with_the_gradebook(course):
    """Every graded student has a grading record whose verdicts are the gradebook's
    points, the report counts them, and it is the instructor's alone (no feedback holds a
    record or the report)."""
    from cnn_grader import class_report
    from cnn_grader.grading_record import read_records

    folder, plan = course
    records = read_records(folder / "logs", ASSIGNMENT)
    data = class_report.gather(folder, ASSIGNMENT, f"sqlite:///{folder / 'gradebook.db'}")
    assert set(records) == set(plan)
    for student, points in plan.items():
        assert all(result["rule"] for result in records[student].parts.values()
                   if not result["passed"]), student  # every failure names its check
        verdicts = {part: result["passed"] for part, result in records[student].parts.items()}
        assert verdicts == {part: score == POINTS[part] for part, score in points.items()}, \
            student
        assert data.points[student] == sum(points.values())
    output = folder / f"report-{ASSIGNMENT}.html"
    assert class_report.main(["--course", str(folder), "--assignment", ASSIGNMENT,
                              "--output", str(output)]) == 0
    page = output.read_text()
    assert f"{len(data.points)} graded, {len(data.ungraded)} ungraded" in page
    for part in POINTS:
        passed = sum(points[part] == POINTS[part] for points in plan.values())
        assert f"<td>{part}</td><td class='passed'>{passed}</td>" in page
    feedback = folder / "feedback"
    assert not [p for p in feedback.rglob("*") if p.suffix == ".json" or "report" in p.name]


# Graded again along the instructor's path, a class of nine: correct (full marks, and a
# careless notebook with a file beside it), unfinished (a test edited, a model that
# raises), defective (torchvision, 2x2 pools with cells that exit), hostile (planted
# links, attacks on the grader) and an unreadable file; the hanging one would only add
# minutes. In the LMS download they go by Canvas names, which have no underscores.
PARALLEL = ("reference", "careless", "untouched_test_edited", "raises_test_deleted",
            "conv2_torchvision", "pools_2x2_exits", "plants_links", "hostile", "truncated")
CANVAS = {student: "stu" + student.replace("_", "") for student in PARALLEL}


def test_the_instructors_path_from_an_lms_download_to_grades(course, postgres_url, tmp_path):
    """README.md's path on a copy of the course with a PostgreSQL gradebook: a Canvas
    download filed by `nbgrader zip_collect`; `python -m cnn_grader.classrun --workers 2`
    gives each student exactly the points sequential `nbgrader autograde` gave and reads
    every phase from nbgrader's log (the copy shares the training cache); the class report,
    opened in Chromium, shows the gradebook's counts; each student's feedback names no one
    else; the export has every total."""
    import os
    import shutil
    import statistics
    import subprocess
    import zipfile

    from cnn_grader.gradebook import points

    folder, plan = course
    copy_root = tmp_path / "parallel"
    shutil.copytree(folder.parent, copy_root, ignore=shutil.ignore_patterns(
        "autograded", "feedback", "gradebook.db", "logs", "grades.csv", "__pycache__",
        "submitted", "refused", "report-*"))
    parallel = copy_root / folder.name
    env = {**os.environ, "NBGRADER_DB_URL": postgres_url,
           "PATH": venv_first(os.environ["PATH"])}

    def run(*argv: str, timeout: float = 600) -> str:
        """``argv`` in the course folder, or a grader module (``-m``) in the repository."""
        done = subprocess.run(argv, cwd=ROOT if "-m" in argv else parallel, env=env,
                              capture_output=True, text=True, check=False, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    nbgrader_bin = str(Path(sys.executable).parent / "nbgrader")
    run(nbgrader_bin, "generate_assignment", ASSIGNMENT, "--force")
    archive = parallel / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as download:
        for number, student in enumerate(PARALLEL):
            canvas = f"{CANVAS[student]}_{100 + number}_{900 + number}_"
            handed_in = folder / "submitted" / student / ASSIGNMENT
            kept = handed_in / f"{NOTEBOOK}.unreadable"  # the stand-in's original
            download.write(kept if kept.exists() else handed_in / NOTEBOOK, canvas + NOTEBOOK)
            for beside in handed_in.glob("*.txt"):  # careless's notes
                download.write(beside, canvas + beside.name)
    run(nbgrader_bin, "zip_collect", ASSIGNMENT)
    assert sorted(p.name for p in (parallel / "submitted").iterdir()) == sorted(CANVAS.values())

    table = run(sys.executable, "-m", "cnn_grader.classrun", "--course", str(parallel),
                "--workers", "2", timeout=1200)
    sequential = {CANVAS[s]: float(sum(plan[s].values())) for s in PARALLEL}
    assert points(postgres_url, ASSIGNMENT) == sequential
    assert f"{len(PARALLEL)} graded, 0 ungraded" in table, table
    cached, trainings = map(int, re.search(r"trainings: (\d+) of (\d+) from the cache",
                                           table).groups())
    assert cached == trainings > 0, table  # the sequential run trained each network once
    rows = {line.split()[0]: line for line in table.splitlines()[1:len(PARALLEL) + 1]}
    assert set(rows) == set(CANVAS.values()), table

    run(sys.executable, "-m", "cnn_grader.class_report", "--course", str(parallel))
    shown = report_in_chromium(parallel / f"report-{ASSIGNMENT}.html")
    assert shown["summary"].startswith(f"{len(PARALLEL)} graded, 0 ungraded"), shown
    assert shown["points"] == {s: f"{v:g}" for s, v in sequential.items()}
    assert shown["points-summary"].startswith(
        f"Median {statistics.median(sequential.values()):g} of")
    for part, (passed, graded) in shown["rates"].items():
        assert graded == len(PARALLEL)
        assert passed == sum(plan[s][part] == POINTS[part] for s in PARALLEL), part

    run(nbgrader_bin, "generate_feedback", ASSIGNMENT)
    for student in CANVAS.values():
        page = (parallel / "feedback" / student / ASSIGNMENT / NOTEBOOK.replace(
            ".ipynb", ".html")).read_text()
        assert not [other for other in CANVAS.values() if other != student and other in page]
    assert not [p for p in (parallel / "feedback").rglob("*")
                if p.suffix == ".json" or "report" in p.name]
    readme = (ROOT / "README.md").read_text()  # README.md's line that zips each folder
    zip_line = next(line for line in readme.splitlines() if line.startswith("for s in feedback"))
    run("bash", "-c", zip_line)
    for student in CANVAS.values():
        with zipfile.ZipFile(parallel / f"feedback-{student}.zip") as bundle:
            assert f"{ASSIGNMENT}.html" in {Path(name).name for name in bundle.namelist()}

    run(nbgrader_bin, "export", "--to", str(parallel / "grades.csv"))
    with open(parallel / "grades.csv", newline="") as handle:
        exported = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(handle)}
    assert exported == sequential


def report_in_chromium(page: Path) -> dict:
    """What Chromium shows of the class report: the first line, the points summary, each
    student's points and each part's (passed, of)."""
    from browser import chrome, missing_browser, screenshot
    from conftest import require

    problem = missing_browser()
    if problem is not None:
        require(problem)
    from selenium.webdriver.common.by import By

    driver = chrome()
    try:
        driver.get(page.as_uri())
        screenshot(driver, "class-report")
        text = {element_id: driver.find_element(By.ID, element_id).get_attribute("textContent")
                for element_id in ("points-summary",)}
        cells = lambda table: [[c.get_attribute("textContent") for c in  # noqa: E731
                                row.find_elements(By.TAG_NAME, "td")]
                               for row in driver.find_elements(By.CSS_SELECTOR, f"#{table} tr")]
        return {"summary": driver.find_element(By.TAG_NAME, "p").text,
                "points-summary": text["points-summary"],
                "points": {row[0]: row[1] for row in cells("points") if row},
                "rates": {row[0]: (int(row[1]), int(row[2])) for row in cells("rates") if row}}
    finally:
        driver.quit()
