"""The nbgrader course end to end: build, release, autograde sample submissions, export grades, feedback."""

import csv
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest

from digitlab import ablation, assignments, grading, sandbox
from digitlab.settings import PROJECT_DIR

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

ARCHITECTURE, TRAINING = "architecture", "training"
ABLATIONS, ERRORS = "overfitting_ablations", "error_analysis"
ASSIGNMENTS = (ARCHITECTURE, TRAINING, ABLATIONS, ERRORS)
POINTS = {ARCHITECTURE: {"ex1-check": 2, "ex2-check": 2},
          TRAINING: {"ex1-check": 3, "ex2-check": 2},
          ABLATIONS: {"ex1-check": 2, "ex2-check": 2, "ex3-check": 2, "ex4-check": 2},
          ERRORS: {"ex1-check": 2, "ex2-check": 1, "ex3-check": 1}}

# Correct answers that make other valid choices than the model solution (other rates, weight decay,
# code written another way): each must get all its points.
ALTERNATIVE = {
    ARCHITECTURE: {
        "ex1-solution": """
def avg_pool_by_hand(fmap, k):
    rows, cols = fmap.shape[0] // k * k, fmap.shape[1] // k * k   # drop what does not fill a whole square
    return fmap[:rows, :cols].reshape(rows // k, k, cols // k, k).mean(dim=(1, 3))""",
        "ex2-solution": """
variant = nn.Sequential(
    nn.Conv2d(1, 32, kernel_size=5), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
    nn.Conv2d(32, 64, kernel_size=5), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.5),
    nn.Flatten())
with torch.no_grad():
    fc1_inputs = variant.eval()(torch.zeros(1, 1, 28, 28)).numel()
variant.append(nn.Linear(fc1_inputs, 128))
variant.append(nn.Linear(128, 10))
n_params_5x5 = sum(p.numel() for p in variant.parameters())""",
    },
    TRAINING: {
        "ex1-solution": """
def evaluate_by_hand(net, X, y, batch_size):
    was_training = net.training
    net.eval()
    total_loss, total_right = 0.0, 0
    with torch.inference_mode():
        for Xb, yb in DataLoader(TensorDataset(X, y), batch_size=batch_size):
            logits = net(Xb.to(device))
            total_loss += nn.functional.cross_entropy(logits, yb.to(device)).item() * len(yb)  # batch mean x size
            total_right += int((logits.argmax(dim=1).cpu() == yb).sum())
    net.train(was_training)   # back to the mode it was in
    return total_loss / len(y), total_right / len(y)""",
        "ex2-solution": """
shift_accuracy = {}
for k in range(5):
    shifted = torch.cat([X_val[..., 28 - k:], X_val[..., :28 - k]], dim=3)   # the last k columns first
    shift_accuracy[k] = accuracy(net, shifted, y_val)""",
    },
    ABLATIONS: {
        "ex1-solution": """
runs = {name: [r for r in records if r["config"] == config]
        for name, config in [("paper", SMALL), ("-BN", ablation.make_config(SMALL, batch_norm=False))]}
train_loss_epoch3 = {name: float(np.mean([r["history"]["train_loss"][2] for r in rs])) for name, rs in runs.items()}
final_gap = {name: float(np.mean([r["final"]["train_acc"] - r["final"]["val_acc"] for r in rs]))
             for name, rs in runs.items()}""",
        "ex2-solution": """
RATES = (0.0, 0.2, 0.4, 0.7)
sweep = ablation.run_grid([ablation.make_config(EXERCISE, dropout=p) for p in RATES], EX_SEEDS, MY_RESULTS)
means = {p: np.mean([r["final"]["val_loss"] for r in sweep if r["config"]["dropout1"] == p]) for p in RATES}
best_rate = sorted(means, key=means.get)[0]""",
        "ex3-solution": """
wd_runs = ablation.run_grid([ablation.make_config(EXERCISE, dropout=0.0, weight_decay=1e-3)], EX_SEEDS, MY_RESULTS)
acc = {name: {r["seed"]: r["final"]["val_acc"] for r in runs}
       for name, runs in (("wd", wd_runs), ("paper", paper_runs))}
d = 100 * np.array([acc["wd"][s] - acc["paper"][s] for s in EX_SEEDS])
wd_diff = float(d.mean())
wd_replaces_dropout = bool(d.mean() + stats.t95(len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) >= 0)""",
        "ex4-solution": """
aug = {**EXERCISE, "dropout1": 0.0, "dropout2": 0.0, "augment": True}
aug_runs = ablation.run_grid([aug], EX_SEEDS, MY_RESULTS)
aug_diff = (ablation.mean_metric(aug_runs, "val_acc") - ablation.mean_metric(paper_runs, "val_acc")) * 100
aug_replaces_dropout = stats.verdict(stats.compare(aug_runs, paper_runs, "val_acc", scale=100)) != "lower"
""",
    },
    ERRORS: {
        "ex1-solution": """
g = torch.Generator().manual_seed(SEED)
total = probs_val.clone()
for _ in range(N_VIEWS):
    total += torch.softmax(batched_logits(net, augment(X_val, generator=g)), dim=1)
probs_tta = total / (N_VIEWS + 1)
right, right_tta = pred_val == y_val, probs_tta.argmax(1) == y_val
fixed, broken = int((right_tta & ~right).sum()), int((right & ~right_tta).sum())""",
        "ex2-solution": """
g = torch.Generator().manual_seed(SEED)
temps = {size: [] for size in SIZES}
eces = {size: [] for size in SIZES}
for size in SIZES:
    for _ in range(5):
        pick = torch.randperm(len(y_fit), generator=g)[:size].sort().values
        t = fit_temperature(logits_fit[pick], y_fit[pick])
        temps[size].append(t)
        eces[size].append(expected_calibration_error(torch.softmax(logits_judge * (1 / t), dim=1), y_judge, N_BINS))""",
        "ex3-solution": """
ece_by_bins = {}
for bins in [50, 15, 5]:
    ece_by_bins[bins] = (expected_calibration_error(torch.softmax(logits_judge, dim=1), y_judge, bins),
                         expected_calibration_error(torch.softmax(logits_judge / T, dim=1), y_judge, bins))""",
    },
}

# Plausible but wrong answers, one per exercise: each must get no points for that exercise.
WRONG = {
    ARCHITECTURE: {
        "ex1-solution": """
def avg_pool_by_hand(fmap, k):
    n_rows, n_cols = -(-fmap.shape[0] // k), -(-fmap.shape[1] // k)   # rounded up: keeps partial squares
    out = torch.zeros(n_rows, n_cols)
    for i in range(n_rows):
        for j in range(n_cols):
            out[i, j] = fmap[i * k:(i + 1) * k, j * k:(j + 1) * k].mean()
    return out""",
        "ex2-solution": """
fc1_inputs = 64 * 7 * 7   # as if the 5x5 convolutions kept the size of their maps
n_params_5x5 = ((32 * 5 * 5 + 32) + 2 * 32 + (64 * 32 * 5 * 5 + 64) + 2 * 64
                + (128 * fc1_inputs + 128) + (10 * 128 + 10))""",
    },
    TRAINING: {
        "ex1-solution": """
def evaluate_by_hand(net, X, y, batch_size):
    net.eval()
    batch_losses, batch_accs = [], []
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            logits = net(X[i:i + batch_size].to(device))
            yb = y[i:i + batch_size].to(device)
            batch_losses.append(loss_fn(logits, yb).item())
            batch_accs.append((logits.argmax(1) == yb).float().mean().item())
    return sum(batch_losses) / len(batch_losses), sum(batch_accs) / len(batch_accs)  # the mean of the batch means""",
        "ex2-solution": """
shift_accuracy = {k: evaluate(net, torch.roll(X_val, k, dims=2), y_val)[1] for k in range(5)}  # down, not right""",
    },
    ABLATIONS: {
        "ex1-solution": """
no_bn = ablation.make_config(SMALL, batch_norm=False)
pair = {"paper": ablation.records_of(records, SMALL), "-BN": ablation.records_of(records, no_bn)}
train_loss_epoch3 = {n: np.mean([r["history"]["train_loss"][3] for r in rs]) for n, rs in pair.items()}  # epoch 4
final_gap = {n: ablation.mean_metric(rs, "gap") for n, rs in pair.items()}""",
        "ex2-solution": """
sweep = ablation.run_grid(ablation.grid(EXERCISE, dropout=[0.0, 0.25, 0.5, 0.75]), EX_SEEDS, MY_RESULTS)
val_loss = ablation.mean_by(sweep, "dropout1", "val_loss")
best_rate = max(val_loss, key=val_loss.get)  # the highest loss""",
        "ex3-solution": """
wd_runs = ablation.run_grid([ablation.make_config(EXERCISE, dropout=0.0, weight_decay=5e-3)], EX_SEEDS, MY_RESULTS)
# a fraction, not points
wd_diff = ablation.mean_metric(wd_runs, "val_acc") - ablation.mean_metric(paper_runs, "val_acc")
wd_replaces_dropout = wd_diff >= -0.5""",
        "ex4-solution": """
aug_runs = ablation.run_grid([ablation.make_config(EXERCISE, dropout=0.0, augment=True)], EX_SEEDS, MY_RESULTS)
# decided on test data
aug_diff = 100 * (ablation.mean_metric(aug_runs, "test_acc") - ablation.mean_metric(paper_runs, "test_acc"))
aug_replaces_dropout = aug_diff >= -0.5""",
    },
    ERRORS: {
        "ex1-solution": """
g = torch.Generator().manual_seed(SEED)
views = [probs_val] + [batched_logits(net, augment(X_val, generator=g)).softmax(1) for _ in range(N_VIEWS)]
probs_tta = torch.stack(views).mean(0)
net_gain = int((probs_tta.argmax(1) == y_val).sum() - (pred_val == y_val).sum())
fixed, broken = max(net_gain, 0), max(-net_gain, 0)  # only the net change""",
        "ex2-solution": """
g = torch.Generator().manual_seed(SEED)
temps, eces = {}, {}
for size in SIZES:
    subsets = [torch.randperm(len(y_fit), generator=g)[:size] for _ in range(5)]
    temps[size] = [fit_temperature(logits_fit[s], y_fit[s]) for s in subsets]
    eces[size] = [expected_calibration_error((logits_test / t).softmax(1), y_test, N_BINS)  # judged on the test set
                  for t in temps[size]]""",
        "ex3-solution": """
ece_by_bins = {n: (expected_calibration_error(probs_judge_T, y_judge, n),  # after and before swapped
                   expected_calibration_error(probs_judge, y_judge, n)) for n in (5, 15, 50)}""",
    },
}


STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


# Two submissions per assignment, each answering every exercise: "odd-wrong" answers exercises 1, 3, ... wrongly
# and the others correctly (not as the model solution does), "even-wrong" the other way round. Together they show
# that every correct alternative earns its points and every wrong answer none, next to answers of the other kind
# (partial credit). Assignment ARCHITECTURE also gets the model answer and an untouched copy of the release.
STUDENTS = {"odd-wrong": 1, "even-wrong": 0}  # name: the parity of the exercises it answers wrongly
CLASS = ["blank", "even-wrong", "model", "odd-wrong"]  # ARCHITECTURE's submissions, sorted
# How the tests grade: two at a time, each sealed off, with limits that a correct answer never meets here.
GRADE_OPTIONS = grading.Options(workers=2, limits=sandbox.Limits(cell_seconds=300, seconds=900))


def answers(assignment: str, student: str) -> dict[str, str]:
    """The answer a student gives to each exercise: a wrong one or a correct alternative."""
    return {grade_id: (WRONG if k % 2 == STUDENTS[student] else ALTERNATIVE)[assignment][grade_id]
            for k, grade_id in enumerate(ALTERNATIVE[assignment], 1)}


def expected_scores(assignment: str, student: str) -> dict[str, float]:
    """Each check's points for the correct answers, 0 for the wrong ones (all for the model answer, none for a
    blank submission)."""
    if student in ("model", "blank"):
        return {check: points if student == "model" else 0 for check, points in POINTS[assignment].items()}
    return {check: 0 if k % 2 == STUDENTS[student] else points
            for k, (check, points) in enumerate(POINTS[assignment].items(), 1)}


def submission(release: nbformat.NotebookNode, answers: dict) -> nbformat.NotebookNode:
    """The released notebook with the answers to the cells named in `answers`."""
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:  # a student replaces the stub, keeping the cell's other lines
            assert STUB in cell.source, grade_id
            cell.source = cell.source.replace(STUB, answers[grade_id].strip())
    return nb


def model_answers(course, assignment: str) -> dict[str, str]:
    """The model solution of each code exercise, from the course's source notebook."""
    (source,) = (course / "source" / assignment).glob("*.ipynb")
    cells = nbformat.read(source, 4).cells
    return {c.metadata.nbgrader["grade_id"]: c.source.split("### BEGIN SOLUTION\n", 1)[1].split("### END")[0]
            for c in cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}


def submit(course, assignment: str, student: str, nb: nbformat.NotebookNode, name: str) -> None:
    """Put `nb` where nbgrader collects it: submitted/<student>/<assignment>/."""
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / name)


def auto_scores(course, assignment: str, student: str) -> dict:
    """The automatic score of every graded code cell of a submission, from the gradebook."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "digitlab") as gb:
        sub = gb.find_submission(assignment, student)
        return {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades if g.name in POINTS[assignment]}


def all_grades(course, assignment: str, students: list[str]) -> dict:
    """Every grade and comment nbgrader's autograde writes, of each student's submission."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "digitlab") as gb:
        out = {}
        for student in students:
            for nb in gb.find_submission(assignment, student).notebooks:
                out[student] = ({g.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades},
                                {c.name: c.auto_comment for c in nb.comments})
        return out


def digest(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def course(tmp_path_factory):
    """The course built once, every submission graded with `grading.grade` (two at a time, sealed off).

    The model answers of every exercise pass their checks, hidden tests included, whenever the chapter
    runs (nbval); ARCHITECTURE's model answer is graded here too, for the comparison with nbgrader.
    """
    grid_before = digest(ablation.RESULTS)
    course = tmp_path_factory.mktemp("course")
    released = assignments.build_course(course)
    for assignment, release_path in released.items():
        release = nbformat.read(release_path, 4)
        for student in STUDENTS:
            submit(course, assignment, student, submission(release, answers(assignment, student)), release_path.name)
    release_path = released[ARCHITECTURE]
    release = nbformat.read(release_path, 4)
    submit(course, ARCHITECTURE, "blank", release, release_path.name)
    submit(course, ARCHITECTURE, "model", submission(release, model_answers(course, ARCHITECTURE)), release_path.name)
    for assignment in released:
        grading.grade(course, assignment, GRADE_OPTIONS, progress=False)
    assert digest(ablation.RESULTS) == grid_before, "grading wrote into the repository's results file"
    return course


def test_answers_are_each_right_in_one_submission_and_wrong_in_the_other():
    for assignment in ASSIGNMENTS:
        given = [answers(assignment, student) for student in STUDENTS]
        for grade_id in ALTERNATIVE[assignment]:
            assert {a[grade_id] for a in given} == {ALTERNATIVE[assignment][grade_id], WRONG[assignment][grade_id]}
        scores = [expected_scores(assignment, student) for student in STUDENTS]
        assert all(0 < sum(s.values()) < sum(POINTS[assignment].values()) for s in scores)  # partial credit


@pytest.mark.parametrize(("assignment", "student"), [(a, s) for a in ASSIGNMENTS for s in STUDENTS]
                         + [(ARCHITECTURE, "model"), (ARCHITECTURE, "blank")])
def test_autograded_scores(course, assignment, student):
    assert auto_scores(course, assignment, student) == expected_scores(assignment, student)


def runs_file(course, student: str):
    """Where a submission of ABLATIONS saved its exercise runs: its own folder in its sandbox's scratch."""
    return course / grading.GRADING_DIR / "work" / ABLATIONS / student / "home" / "submission" / \
        assignments.GRADING_RESULTS


def test_each_submission_trains_into_its_own_file(course):
    # the settings cell's EXERCISE run, four dropout rates and one config each for weight decay and augmentation,
    # each with the two seeds of quick mode
    for student in STUDENTS:
        assert len(ablation.load_records(runs_file(course, student))) == 14, student


def test_grading_again_gives_the_same_scores_from_fresh_runs(course):
    student = "odd-wrong"
    first = {(r["key"], r["seed"]): r["final"] for r in ablation.load_records(runs_file(course, student))}
    planted = course / "submitted" / student / ABLATIONS / assignments.GRADING_RESULTS
    planted.write_text(json.dumps({"forged": True}) + "\n")  # a results file sent in with a submission is never used
    before = auto_scores(course, ABLATIONS, student)
    (record,) = grading.grade(course, ABLATIONS, GRADE_OPTIONS, progress=False)  # changed: graded again, alone
    assert record["student"] == student and auto_scores(course, ABLATIONS, student) == before
    again = {(r["key"], r["seed"]): r["final"] for r in ablation.load_records(runs_file(course, student))}
    assert again == first  # trained afresh, to the same numbers
    assert grading.grade(course, ABLATIONS, GRADE_OPTIONS, progress=False) == []  # nothing new: nothing graded


def test_export_and_feedback(course):
    assignments.nbgrader("export", "--to", "grades.csv", course_dir=course)
    with open(course / "grades.csv") as f:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}
    graded = [(a, s) for a in ASSIGNMENTS for s in STUDENTS] + [(ARCHITECTURE, "model"), (ARCHITECTURE, "blank")]
    assert len(rows) == len(ASSIGNMENTS) * len(CLASS)  # a row for every student and assignment, submitted or not
    for assignment, student in graded:
        assert float(rows[assignment, student]["raw_score"]) == sum(expected_scores(assignment, student).values())
    assert float(rows[TRAINING, "model"]["raw_score"]) == 0  # nothing submitted
    for assignment in POINTS:
        assignments.nbgrader("generate_feedback", assignment, "--force", course_dir=course)
    pages = sorted(course.glob("feedback/*/*/*.html"))
    assert len(pages) == len(graded)
    page = (course / "feedback" / "odd-wrong" / ERRORS / "05_error_analysis.html").read_text()
    assert "broken counts the correct predictions" in page or "fixed counts the mistakes" in page  # exercise 1
    for assignment, notebook in [(ABLATIONS, "04_overfitting_ablations"), (ERRORS, "05_error_analysis")]:
        body = (course / "feedback" / "even-wrong" / assignment / f"{notebook}.html").read_text().split("<body", 1)[1]
        assert "Exercise 1" in body and body.count("AssertionError") > 0  # the exercises, the failures shown ...
        assert ">Settings<" not in body  # ... and none of the chapter's cells (its settings heading opens it)


def test_feedback_keeps_only_the_exercise_section():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Settings"), nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("## 7 · Exercises"), nbformat.v4.new_markdown_cell("### Exercise 1"),
        nbformat.v4.new_code_cell("y = 2", metadata={"nbgrader": {"solution": True, "grade_id": "a"}}),
        nbformat.v4.new_markdown_cell("## Questions to think about"), nbformat.v4.new_markdown_cell("## References")])
    kept, _ = assignments.ExercisesOnly().preprocess(nb, {})
    assert [c.source for c in kept.cells] == ["## 7 · Exercises", "### Exercise 1", "y = 2"]


def test_config_keeps_grading_inside_the_course(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "mnist"))
    text = assignments.config_text()
    assert 'os.environ["DIGITLAB_FAST"] = "1"' in text and "c.CourseDirectory.root = ROOT" in text
    assert str(tmp_path / "mnist") in text and "quickstart" not in text
    assert f"c.Execute.timeout = {assignments.CELL_TIMEOUT}" in text
    assert assignments.assignment_name(assignments.NOTEBOOKS_DIR / "05_error_analysis.ipynb") == ERRORS


def test_zip_collect_files_an_lms_download(tmp_path):
    nb05 = assignments.NOTEBOOKS_DIR / "05_error_analysis.ipynb"
    course = tmp_path / "course"
    assignments.build_course(course, [nb05])
    archive = course / "downloaded" / ERRORS / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "download.zip", "w") as z:
        for student in ("alice", "bob"):
            z.write(course / "release" / ERRORS / nb05.name, f"{student}_{nb05.name}")
    regexp = r".*/(?P<student_id>[^_/]+)_(?P<file_id>05_error_analysis)\.ipynb"  # as in notebooks/README.md
    assignments.nbgrader("zip_collect", ERRORS, "--force", f"--FileNameCollectorPlugin.named_regexp={regexp}",
                         course_dir=course)
    assert sorted(p.parts[-3] for p in course.glob(f"submitted/*/{ERRORS}/{nb05.name}")) == ["alice", "bob"]


def class_copy(course, tmp_path):
    """A copy of the course with ARCHITECTURE's four submissions, nothing graded: no results, no submissions in
    the gradebook, no autograded notebooks."""
    copy = tmp_path / "course"
    shutil.copytree(course, copy, ignore=shutil.ignore_patterns("grading", "autograded", "feedback"))
    for student in {p.parent.name for p in (copy / "submitted").glob("*/*")} - set(CLASS):
        shutil.rmtree(copy / "submitted" / student)
    with Gradebook(f"sqlite:///{copy / 'gradebook.db'}", "digitlab") as gb:
        for student in gb.students:
            for sub in list(student.submissions):
                gb.remove_submission(sub.assignment.name, student.id)
    return copy


def test_scores_are_those_of_nbgraders_own_serial_autograde(course, tmp_path):
    # the model answer and a blank one of a chapter (every kind, on a small assignment: tests/test_grading.py)
    copy = class_copy(course, tmp_path)
    for student in ("model", "blank"):  # one after another, not sealed
        assignments.nbgrader("autograde", ARCHITECTURE, "--student", student, "--force", course_dir=copy)
    assert all_grades(copy, ARCHITECTURE, ["model", "blank"]) == all_grades(course, ARCHITECTURE, ["model", "blank"])


def tree_digest(*folders) -> dict[str, str]:
    """The SHA-1 of every file under `folders` (skipping caches)."""
    return {str(p): digest(p) for folder in folders for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}


def test_a_hostile_submission_reaches_nothing_and_costs_only_itself(course, tmp_path):
    from test_sandbox import LIMIT_CELLS, Server, attacks, errors, printed

    release_path = course / "release" / ARCHITECTURE / "02_architecture.ipynb"
    nb = submission(nbformat.read(release_path, 4), ALTERNATIVE[ARCHITECTURE])  # every exercise answered right
    server = Server()
    targets = {"a model solution": course / "source" / ARCHITECTURE / release_path.name,
               "another student's notebook": course / "submitted" / "model" / ARCHITECTURE / release_path.name,
               "the gradebook": course / "gradebook.db", "the instructor's home": Path.home() / ".bashrc"}
    hostile = attacks(targets, server.port) + [attempt_overwrite(course / "gradebook.db"), *LIMIT_CELLS]
    first_exercise = next(k for k, c in enumerate(nb.cells) if "nbgrader" in c.metadata)
    nb.cells[first_exercise:first_exercise] = [nbformat.v4.new_code_cell(c) for c in hostile]
    submit(course, ARCHITECTURE, "hostile", nb, release_path.name)
    others = all_grades(course, ARCHITECTURE, CLASS)
    watched = [course / "source", course / "release", *[course / "submitted" / s for s in CLASS],
               PROJECT_DIR / "digitlab", PROJECT_DIR / "models", PROJECT_DIR / "results", PROJECT_DIR / "notebooks"]
    before = tree_digest(*watched)
    options = grading.Options(workers=2, limits=sandbox.Limits(cell_seconds=10, seconds=600, memory_gb=4,
                                                                 processes=256))
    (record,) = grading.grade(course, ARCHITECTURE, options, progress=False)  # the others are unchanged: kept
    server.close()
    graded = nbformat.read(course / "autograded" / "hostile" / ARCHITECTURE / release_path.name, 4)
    assert "LEAKED" not in printed(graded) and printed(graded).count("blocked:") == len(hostile) - 3
    assert {"CellTimeoutError", "MemoryError", "BlockingIOError"} <= set(errors(graded))
    assert server.accepted == 0
    assert {"cell timeout", "memory limit", "process limit"} <= set(record["problems"])
    assert auto_scores(course, ARCHITECTURE, "hostile") == expected_scores(ARCHITECTURE, "model")  # honest answers
    assert all_grades(course, ARCHITECTURE, CLASS) == others
    assert tree_digest(*watched) == before
    assert not (PROJECT_DIR / "sandbox-escape.txt").exists() and not (Path.home() / "sandbox-escape.txt").exists()


def attempt_overwrite(path) -> str:
    from test_sandbox import attempt

    return attempt("overwrite the gradebook", f"open({str(path)!r}, 'r+b').write(b'x')")
