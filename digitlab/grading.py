"""Autograde a class: every new or changed submission, N at a time, each in a sandbox, resumable and shardable.

Each submission is graded by nbgrader's own `autograde` into a private copy of the gradebook, its notebook
executed in the sandbox (`digitlab.sandbox`). Its scores become one line of a results file
(`grading/<assignment>.jsonl` in the course folder), appended only once the submission is fully graded; `merge`
folds the results files into `gradebook.db` as nbgrader's autograde would have written them, replacing the
gradebook whole. A grader killed at any moment loses only the submissions it was grading.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor
from sqlalchemy.exc import SAWarning
from traitlets import Bool, Float, Int, Unicode

from digitlab import cells, sandbox
from digitlab.errors import DigitlabError
from digitlab.files import alive, atomic_path

try:
    import fcntl
except ImportError:  # not Linux: the sandbox is refused anyway, and one grader runs at a time
    fcntl = None

COURSE_ID = "digitlab"
GRADING_DIR = "grading"   # in the course folder: results files, locks, each submission's work folder
# What the summary names when a cell's error says that a limit was hit.
LIMIT_ERRORS = {"CellTimeoutError": "cell timeout", "MemoryError": "memory limit", "DeadKernelError": "kernel died",
                "SandboxError": "sandbox"}


class DropUngradedCells(Preprocessor):
    """Leave out what grading does not need: the chapter's check cells (tag 'check'), which test the prose, not
    the student, and the chapter cells its exercises do not need (tag `cells.SKIP_TAG`), except those that
    bind a name a cell that runs reads (`cells.cells_to_skip`): a student may use the chapter's helpers."""

    enabled = Bool(True)

    def preprocess(self, nb, resources):
        nb.cells = [cell for cell in nb.cells if "check" not in cell.metadata.get("tags", [])]
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        skip = [cells.SKIP_TAG in cell.metadata.get("tags", []) and "nbgrader" not in cell.metadata for cell in code]
        if any(skip):
            skip = cells.cells_to_skip([cell.source for cell in code], skip)
            dropped = {id(cell) for cell, s in zip(code, skip, strict=True) if s}
            nb.cells = [cell for cell in nb.cells if id(cell) not in dropped]
        return nb, resources


class SealedExecute(NbGraderPreprocessor):
    """nbgrader's Execute, in the sandbox: the notebook runs there, its outputs come back onto the cells."""

    home = Unicode("", help="the submission's scratch folder (its home in the sandbox)").tag(config=True)
    slot = Int(0, help="the worker slot: the sandbox's user id, as root").tag(config=True)
    threads = Int(1, help="PyTorch threads of the submission").tag(config=True)
    cell_seconds = Int(sandbox.Limits.cell_seconds).tag(config=True)
    seconds = Int(sandbox.Limits.seconds).tag(config=True)
    memory_gb = Float(sandbox.Limits.memory_gb).tag(config=True)
    processes = Int(sandbox.Limits.processes).tag(config=True)

    def preprocess(self, nb, resources):
        limits = sandbox.Limits(self.cell_seconds, self.seconds, self.memory_gb, self.processes)
        home = Path(self.home)
        outcome = sandbox.execute(nb, Path(resources["metadata"]["path"]), home, limits, self.slot, self.threads)
        ran = outcome.nb
        if ran is not None and [c.source for c in ran.cells] != [c.source for c in nb.cells]:
            ran, outcome.problem = None, "the sandbox gave back a notebook with other cells"
        for k, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if ran is None:  # nothing ran, as far as the grader can tell: every check fails
                cell.outputs = [nbformat.v4.new_output("error", ename="SandboxError", evalue=outcome.problem,
                                                       traceback=[f"SandboxError: {outcome.problem}"])]
            else:
                cell.outputs, cell.execution_count = ran.cells[k].outputs, ran.cells[k].execution_count
                cell.metadata.pop("execution", None)  # the times recorded when it ran, as nbgrader's Execute keeps
                if "execution" in ran.cells[k].metadata:
                    cell.metadata.execution = ran.cells[k].metadata.execution
        status = {"problem": outcome.problem, "log": outcome.log[-4000:]}
        (home.parent / "sandbox.json").write_text(json.dumps(status))
        return nb, resources


@dataclasses.dataclass(frozen=True)
class Options:
    """How to grade: workers in parallel, PyTorch threads each, the sandbox's limits, or no sandbox at all."""

    workers: int = 1
    threads: int | None = None   # None: the cores shared among the workers (fixed, so regrading repeats the runs)
    limits: sandbox.Limits = sandbox.Limits()
    sandboxed: bool = True


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): the second of eight slices of the class."""
    try:
        i, k = (int(part) for part in text.split("/"))
    except ValueError:
        raise DigitlabError(f"--shard needs I/K, such as 2/8 (the 2nd of 8 slices), not {text!r}.") from None
    if not 1 <= i <= k:
        raise DigitlabError(f"--shard {text}: I must be from 1 to K.")
    return i, k


def submissions(course: Path, assignment: str) -> list[str]:
    """The students with a submission of `assignment` in submitted/, sorted."""
    return sorted(p.parent.name for p in (course / "submitted").glob(f"*/{assignment}") if p.is_dir())


def in_shard(students: list[str], shard: tuple[int, int] | None) -> list[str]:
    """The students of slice I of K (every K-th, starting with the I-th), or all of them."""
    return students if shard is None else students[shard[0] - 1::shard[1]]


def _files_digest(h, folder: Path) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")


def digest(course: Path, assignment: str, student: str) -> str:
    """What a grade depends on: the submission's files and the assignment's source (its checks)."""
    h = hashlib.sha256()
    _files_digest(h, course / "source" / assignment)
    _files_digest(h, course / "submitted" / student / assignment)
    return h.hexdigest()[:16]


def results_path(course: Path, assignment: str, shard: tuple[int, int] | None = None) -> Path:
    """The results file a grader appends to: one per assignment, or one per shard."""
    name = assignment if shard is None else f"{assignment}.shard-{shard[0]}-of-{shard[1]}"
    return course / GRADING_DIR / f"{name}.jsonl"


def read_records(path: Path) -> list[dict]:
    """The records of a results file; a last line cut short by a kill is skipped, any other bad line refused."""
    records = []
    lines = path.read_text(encoding="utf-8").split("\n") if path.exists() else []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # the writer was killed while appending: the submission is graded again
                continue
            raise DigitlabError(f"{path}, line {n}: not a grading record. Delete the line (its submission is then "
                                "graded again) or the file.") from None
        if not isinstance(record, dict) or not {"assignment", "student", "digest", "notebooks"} <= set(record):
            raise DigitlabError(f"{path}, line {n}: not a grading record. Delete the line or the file.")
        records.append(record)
    return records


def latest(records: list[dict]) -> dict[tuple[str, str], dict]:
    """The last record of each (assignment, student), by when it was graded."""
    out = {}
    for record in sorted(records, key=lambda r: r.get("graded_at", "")):
        out[record["assignment"], record["student"]] = record
    return out


def append_record(path: Path, record: dict) -> None:
    """Append one record as one line, flushed to disk before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block, or refuse at once if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DigitlabError(f"another grader is {what} in this course (it holds {path}); wait until it "
                                    "ends, or stop it and run this command again.") from None
        yield


def copy_gradebook(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite gradebook (SQLite's own backup, safe while others read it)."""
    target.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def gradebook_url(path: Path) -> str:
    return f"sqlite:///{path}"


def read_grades(db: Path, assignment: str, student: str) -> dict:
    """A submission's automatic grades and comments per notebook, and its timestamp, from a gradebook."""
    with Gradebook(gradebook_url(db), COURSE_ID) as gb:
        sub = gb.find_submission(assignment, student)
        notebooks = {nb.name: {"grades": {g.name: g.auto_score for g in nb.grades},
                               "comments": {c.name: c.auto_comment for c in nb.comments},
                               "late_penalty": nb.late_submission_penalty} for nb in sub.notebooks}
        return {"notebooks": notebooks, "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
                "score": sub.score, "max_score": sub.max_score}


def problems(course: Path, assignment: str, student: str, work: Path) -> list[str]:
    """What went wrong, in words: the sandbox's own problem, and each limit a cell hit."""
    found = []
    with contextlib.suppress(OSError, ValueError):
        problem = json.loads((work / "sandbox.json").read_text())["problem"]
        if problem:
            found.append(problem)
    for path in (course / "autograded" / student / assignment).glob("*.ipynb"):
        with contextlib.suppress(Exception):
            for cell in nbformat.read(path, as_version=4).cells:
                for out in cell.get("outputs", []):
                    name = out.get("ename", "")
                    label = LIMIT_ERRORS.get(name, "")
                    if name == "BlockingIOError" and "fork" in "".join(out.get("traceback", [])):
                        label = "process limit"
                    if label and label not in found and not (label == "sandbox" and found):
                        found.append(label)
    return found


def _die_with_parent() -> None:
    """In a child: receive SIGKILL when the grader dies, so that no orphan goes on grading."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def grade_one(course: Path, assignment: str, student: str, sub_digest: str, template: Path, slot: int,
              options: Options) -> dict:
    """Autograde one submission (whose `digest` is `sub_digest`) with nbgrader into a private gradebook; return
    its results record."""
    start = time.perf_counter()
    work = course / GRADING_DIR / "work" / assignment / student
    work.mkdir(parents=True, exist_ok=True)
    (work / "sandbox.json").unlink(missing_ok=True)
    db = work / "gradebook.db"
    copy_gradebook(template, db)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "DIGITLAB_SANDBOX": "1" if options.sandboxed else "0", "OMP_NUM_THREADS": str(options.threads)}
    limits = options.limits
    command = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--student", student, "--force",
               f"--CourseDirectory.db_url={gradebook_url(db)}", f"--SealedExecute.home={work / 'home'}",
               f"--SealedExecute.slot={slot}", f"--SealedExecute.threads={options.threads}",
               f"--SealedExecute.cell_seconds={limits.cell_seconds}", f"--SealedExecute.seconds={limits.seconds}",
               f"--SealedExecute.memory_gb={limits.memory_gb}", f"--SealedExecute.processes={limits.processes}",
               f"--Execute.timeout={limits.cell_seconds}"]
    with open(work / "nbgrader.log", "w") as log:
        done = subprocess.run(command, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent)
    record = {"assignment": assignment, "student": student, "digest": sub_digest,
              "graded_at": datetime.datetime.now(datetime.UTC).isoformat(), "sandboxed": options.sandboxed}
    try:
        record |= read_grades(db, assignment, student)
    except MissingEntry:
        record |= {"notebooks": {}, "timestamp": None, "score": None, "max_score": None}
    found = problems(course, assignment, student, work)
    if done.returncode != 0:
        tail = (work / "nbgrader.log").read_text(errors="replace").strip().splitlines()[-1:]
        found.append(f"nbgrader failed (exit {done.returncode}): {' '.join(tail)[:200]}; see {work / 'nbgrader.log'}")
    record |= {"problems": found, "seconds": round(time.perf_counter() - start, 1)}
    db.unlink(missing_ok=True)
    return record


def check_course(course: Path, assignment: str) -> None:
    """Refuse, saying what to do, a course folder or an assignment that is not there."""
    if not (course / "gradebook.db").exists() or not (course / "nbgrader_config.py").exists():
        raise DigitlabError(f"{course} is not a built course (no gradebook.db or nbgrader_config.py): run "
                            "`make assignments` (or python -m digitlab.assignments build) first.")
    if not (course / "release" / assignment).is_dir():
        known = sorted(p.name for p in (course / "release").iterdir() if p.is_dir())
        raise DigitlabError(f"no assignment {assignment!r} in {course}; the assignments are: {', '.join(known)}.")


def grade(course: Path, assignment: str, options: Options = Options(), shard: tuple[int, int] | None = None,
          progress: bool = True) -> list[dict]:
    """Grade every new or changed submission of `assignment` (of the shard), merge unless sharded; return the
    records of this run."""
    course = Path(course).resolve()
    check_course(course, assignment)
    if options.sandboxed:
        sandbox.refuse_unless_available(unsafe=False)
    out = results_path(course, assignment, shard)
    grading = course / GRADING_DIR
    with exclusive(out.with_suffix(".lock"), f"grading {out.stem}"):
        done = latest([r for path in grading.glob(f"{assignment}*.jsonl") for r in read_records(path)])
        students = in_shard(submissions(course, assignment), shard)
        digests = {s: digest(course, assignment, s) for s in students}
        todo = [s for s in students if done.get((assignment, s), {}).get("digest") != digests[s]]
        options = dataclasses.replace(options, threads=options.threads or max(1, (os.cpu_count() or 1)
                                                                              // options.workers))
        template = grading / "work" / assignment / f"template-{os.getpid()}.db"
        template.parent.mkdir(parents=True, exist_ok=True)
        for stale in template.parent.glob("template-*.db"):  # left by graders that were killed
            if stale.stem.split("-")[1].isdigit() and not alive(int(stale.stem.split("-")[1])):
                stale.unlink(missing_ok=True)
        copy_gradebook(course / "gradebook.db", template)
        _font_cache()
        try:
            records = _run_all(course, assignment, {s: digests[s] for s in todo}, template, options, out, progress)
        except KeyboardInterrupt:
            if shard is None:
                merge(course, [out])
            raise DigitlabError(f"interrupted. What was graded is saved in {out} (and the gradebook); run the same "
                                "command again to grade the rest.") from None
        finally:
            template.unlink(missing_ok=True)
        if shard is None:
            merge(course, [out])
        print_summary(records, skipped=len(students) - len(todo), workers=options.workers)
        return records


def _font_cache() -> None:
    """Build matplotlib's font cache here once; each sandbox gets a copy instead of building its own."""
    import matplotlib.font_manager  # noqa: F401 (importing it writes the cache)


def _run_all(course: Path, assignment: str, todo: dict[str, str], template: Path, options: Options, out: Path,
             progress: bool) -> list[dict]:
    """Grade `todo` (student: digest), options.workers at a time; append each record to `out` when ready."""
    from tqdm.auto import tqdm

    slots = list(range(options.workers))
    lock = threading.Lock()

    def work(student: str) -> dict:
        with lock:
            slot = slots.pop()
        try:
            return grade_one(course, assignment, student, todo[student], template, slot, options)
        finally:
            with lock:
                slots.append(slot)

    records, failed = [], 0
    bar = tqdm(total=len(todo), desc=f"grading {assignment}", unit="submission", disable=not progress or not todo)
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        futures = [pool.submit(work, s) for s in todo]
        try:
            for future in as_completed(futures):
                record = future.result()
                append_record(out, record)
                records.append(record)
                failed += bool(record["problems"])
                bar.set_postfix(failures=failed)
                bar.update()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            bar.close()
    return records


def merge(course: Path, paths: list[Path]) -> int:
    """Fold the latest record of each submission in `paths` into the course's gradebook, replacing it whole;
    return how many submissions were written."""
    course = Path(course).resolve()
    records = latest([r for path in paths for r in read_records(Path(path))])
    if not records:
        return 0
    db = course / "gradebook.db"
    with exclusive(course / GRADING_DIR / "gradebook.lock", "merging into the gradebook"):
        with atomic_path(db) as tmp:
            copy_gradebook(db, Path(tmp))
            with Gradebook(gradebook_url(Path(tmp)), COURSE_ID) as gb, warnings.catch_warnings():
                warnings.simplefilter("ignore", SAWarning)  # nbgrader's own submission code sets these off
                for record in records.values():
                    _write_record(gb, record)
    return len(records)


def _write_record(gb: Gradebook, record: dict) -> None:
    """Write one submission's automatic grades as nbgrader's SaveAutoGrades does (manual scores are kept)."""
    assignment, student = record["assignment"], record["student"]
    gb.update_or_create_student(student)
    timestamp = record.get("timestamp")
    if timestamp:
        gb.update_or_create_submission(assignment, student, timestamp=datetime.datetime.fromisoformat(timestamp))
    else:
        gb.update_or_create_submission(assignment, student)
    for notebook, grades in record["notebooks"].items():
        for name, auto_score in grades["grades"].items():
            grade = gb.find_grade(name, notebook, assignment, student)
            grade.auto_score = auto_score
            grade.needs_manual_grade = grade.manual_score is not None or auto_score is None
        for name, auto_comment in grades["comments"].items():
            gb.find_comment(name, notebook, assignment, student).auto_comment = auto_comment
        gb.find_submission_notebook(notebook, assignment, student).late_submission_penalty = grades["late_penalty"]
    gb.db.commit()


def print_summary(records: list[dict], skipped: int, workers: int) -> None:
    """One line per submission graded now: student, score, seconds, what went wrong."""
    if not records:
        print(f"Nothing to grade: {skipped} submission(s) unchanged since they were graded.")
        return
    width = max(len(r["student"]) for r in records)
    print(f"{'student':<{width}}  {'score':>11}  {'seconds':>7}  problems")
    for r in sorted(records, key=lambda r: r["student"]):
        score = "-" if r["score"] is None else f"{r['score']:g} / {r['max_score']:g}"
        print(f"{r['student']:<{width}}  {score:>11}  {r['seconds']:>7.0f}  {'; '.join(r['problems']) or '-'}")
    failed = sum(bool(r["problems"]) for r in records)
    print(f"{len(records)} graded with {workers} worker(s), {failed} with problems, {skipped} unchanged and kept.")
