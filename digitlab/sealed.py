"""Execute one notebook inside the grading sandbox, as nbgrader's Execute does: notebook in on stdin, out on a pipe.

Started by `digitlab.sandbox` as `python .../sealed.py FD TIMEOUT`, never imported: it needs no torch, only
nbgrader. The executed notebook goes to file descriptor FD, a pipe the grader holds outside the sandbox. This
process marks itself not dumpable, so the submission's kernel, although it runs as the same user, can neither
read this process's memory nor write into that pipe through /proc.
"""

import ctypes
import os
import sys

import nbformat
from nbgrader.preprocessors import Execute

PR_SET_DUMPABLE = 4


def main() -> None:
    """Execute the notebook read from stdin (cells time out after TIMEOUT s) and write it to FD."""
    fd, timeout = int(sys.argv[1]), int(sys.argv[2])
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    nb = nbformat.reads(sys.stdin.read(), as_version=4)
    # As nbgrader's autograde, except that a kernel too busy to send its output in time (a submission that forks
    # or allocates without end) does not end the run: the cells after it, honest answers included, still run.
    Execute(timeout=timeout, raise_on_iopub_timeout=False).preprocess(nb, {"metadata": {"path": os.getcwd()}})
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(nbformat.writes(nb))


if __name__ == "__main__":
    main()
