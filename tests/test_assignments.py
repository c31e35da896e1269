"""The nbgrader course end to end: build, release, autograde sample submissions, export grades, feedback."""

import csv
import hashlib
import json
import zipfile

import nbformat
import pytest

from digitlab import ablation, assignments

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
aug_diff = (ablation.mean(aug_runs, "val_acc") - ablation.mean(paper_runs, "val_acc")) * 100
aug_replaces_dropout = stats.verdict(stats.compare(aug_runs, paper_runs, "val_acc", scale=100)) != "lower"
""",
    },
    ERRORS: {
        "ex1-solution": """
g = torch.Generator().manual_seed(SEED)
total = probs_val.clone()
for _ in range(N_VIEWS):
    total += torch.softmax(split_logits(net, augment(X_val, generator=g)), dim=1)
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
pair = {"paper": ablation.select(records, SMALL), "-BN": ablation.select(records, no_bn)}
train_loss_epoch3 = {n: np.mean([r["history"]["train_loss"][3] for r in rs]) for n, rs in pair.items()}  # epoch 4
final_gap = {n: ablation.mean(rs, "gap") for n, rs in pair.items()}""",
        "ex2-solution": """
sweep = ablation.run_grid(ablation.grid(EXERCISE, dropout=[0.0, 0.25, 0.5, 0.75]), EX_SEEDS, MY_RESULTS)
val_loss = ablation.mean_by(sweep, "dropout1", "val_loss")
best_rate = max(val_loss, key=val_loss.get)  # the highest loss""",
        "ex3-solution": """
wd_runs = ablation.run_grid([ablation.make_config(EXERCISE, dropout=0.0, weight_decay=5e-3)], EX_SEEDS, MY_RESULTS)
wd_diff = ablation.mean(wd_runs, "val_acc") - ablation.mean(paper_runs, "val_acc")  # a fraction, not points
wd_replaces_dropout = wd_diff >= -0.5""",
        "ex4-solution": """
aug_runs = ablation.run_grid([ablation.make_config(EXERCISE, dropout=0.0, augment=True)], EX_SEEDS, MY_RESULTS)
aug_diff = 100 * (ablation.mean(aug_runs, "test_acc") - ablation.mean(paper_runs, "test_acc"))  # decided on test data
aug_replaces_dropout = aug_diff >= -0.5""",
    },
    ERRORS: {
        "ex1-solution": """
g = torch.Generator().manual_seed(SEED)
views = [probs_val] + [split_logits(net, augment(X_val, generator=g)).softmax(1) for _ in range(N_VIEWS)]
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
# (partial credit). That an untouched stub earns nothing, tests/test_student.py shows.
STUDENTS = {"odd-wrong": 1, "even-wrong": 0}  # name: the parity of the exercises it answers wrongly


def answers(assignment: str, student: str) -> dict[str, str]:
    """The answer a student gives to each exercise: a wrong one or a correct alternative."""
    return {grade_id: (WRONG if k % 2 == STUDENTS[student] else ALTERNATIVE)[assignment][grade_id]
            for k, grade_id in enumerate(ALTERNATIVE[assignment], 1)}


def expected_scores(assignment: str, student: str) -> dict[str, float]:
    """Each check's points for the correct answers, 0 for the wrong ones."""
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


def digest(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def course(tmp_path_factory):
    """The course built once, the STUDENTS' submissions autograded with one nbgrader call per assignment.

    The model answers of every exercise pass their checks, hidden tests included, whenever the chapter
    runs (nbval), so grading them again here would only repeat a 50-second notebook run.
    """
    grid_before = digest(ablation.RESULTS)
    course = tmp_path_factory.mktemp("course")
    released = assignments.build_course(course)
    for assignment, release_path in released.items():
        release = nbformat.read(release_path, 4)
        for student in STUDENTS:
            submit(course, assignment, student, submission(release, answers(assignment, student)), release_path.name)
        assignments.nbgrader("autograde", assignment, "--force", course_dir=course)
    assert digest(ablation.RESULTS) == grid_before, "grading wrote into the repository's results file"
    return course


def test_answers_are_each_right_in_one_submission_and_wrong_in_the_other():
    for assignment in ASSIGNMENTS:
        given = [answers(assignment, student) for student in STUDENTS]
        for grade_id in ALTERNATIVE[assignment]:
            assert {a[grade_id] for a in given} == {ALTERNATIVE[assignment][grade_id], WRONG[assignment][grade_id]}
        scores = [expected_scores(assignment, student) for student in STUDENTS]
        assert all(0 < sum(s.values()) < sum(POINTS[assignment].values()) for s in scores)  # partial credit


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("student", list(STUDENTS))
def test_autograded_scores(course, assignment, student):
    assert auto_scores(course, assignment, student) == expected_scores(assignment, student)


def test_each_submission_trains_into_its_own_file(course):
    # the settings cell's EXERCISE run, four dropout rates and one config each for weight decay and augmentation,
    # each with the two seeds of quick mode
    for student in STUDENTS:
        path = course / "autograded" / student / ABLATIONS / assignments.GRADING_RESULTS
        assert len(ablation.load_records(path)) == 14, student


def test_grading_again_gives_the_same_scores_from_fresh_runs(course):
    student = "odd-wrong"
    graded = course / "autograded" / student / ABLATIONS / assignments.GRADING_RESULTS
    first = {(r["key"], r["seed"]): r["final"] for r in ablation.load_records(graded)}
    planted = course / "submitted" / student / ABLATIONS / assignments.GRADING_RESULTS
    planted.write_text(json.dumps({"forged": True}) + "\n")  # a results file sent in with a submission is never used
    before = auto_scores(course, ABLATIONS, student)
    assignments.nbgrader("autograde", ABLATIONS, "--student", student, "--force", course_dir=course)
    assert auto_scores(course, ABLATIONS, student) == before
    again = {(r["key"], r["seed"]): r["final"] for r in ablation.load_records(graded)}
    assert again == first  # trained afresh, to the same numbers


def test_export_and_feedback(course):
    assignments.nbgrader("export", "--to", "grades.csv", course_dir=course)
    with open(course / "grades.csv") as f:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}
    assert len(rows) == len(ASSIGNMENTS) * len(STUDENTS)
    for assignment in POINTS:
        for student in STUDENTS:
            assert float(rows[assignment, student]["raw_score"]) == sum(expected_scores(assignment, student).values())
    for assignment in POINTS:
        assignments.nbgrader("generate_feedback", assignment, "--force", course_dir=course)
    pages = sorted(course.glob("feedback/*/*/*.html"))
    assert len(pages) == len(ASSIGNMENTS) * len(STUDENTS)
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
