"""The grading sandbox: what a submission's notebook can reach, and the limits it meets."""

import os
import socket
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from digitlab import sandbox
from digitlab.settings import PROJECT_DIR

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox is Linux-only (namespaces)")


@pytest.fixture(scope="module")
def sealed():
    """The sandbox must work wherever the tests run on Linux (.ci/run installs bubblewrap)."""
    why = sandbox.unavailable()
    if why:
        pytest.fail(f"the grading sandbox cannot run: {why}")


class Server:
    """A TCP server on 127.0.0.1, outside the sandbox, that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.accepted = self.sock.getsockname()[1], 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.sock.close()


def attempt(what: str, code: str) -> str:
    """A cell that tries `code` and prints 'LEAKED: what' if it works, 'blocked: what (the error)' if not."""
    body = "\n".join("    " + line for line in code.strip().splitlines())
    return (f"try:\n{body}\n    print('LEAKED: ' + {what!r})\n"
            f"except BaseException as err:\n    print('blocked: ' + {what!r} + ' (' + type(err).__name__ + ')')")


def attacks(targets: dict[str, Path], port: int) -> list[str]:
    """Cells that try to read each of `targets`, write into the repository and the home folder, and connect to
    127.0.0.1:port (outside the sandbox); each prints what it tried and whether it worked."""
    cells = [attempt(f"read {name}", f"open({str(path)!r}, 'rb').read(1)") for name, path in targets.items()]
    return cells + [
        attempt("write the repository", f"open({str(PROJECT_DIR / 'sandbox-escape.txt')!r}, 'w').write('x')"),
        attempt("append to digitlab", f"open({str(PROJECT_DIR / 'digitlab' / '__init__.py')!r}, 'a')"),
        attempt("write the home folder", f"open({str(Path.home() / 'sandbox-escape.txt')!r}, 'w').write('x')"),
        attempt("connect", f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)")]


# Cells that run into the limits: loop, fork and allocate without end (forking stops at 5,000 processes, should
# the process limit ever fail, so that a broken sandbox cannot take the test machine down).
LIMIT_CELLS = ["while True:\n    pass",
               "import os, time\nfor _ in range(5000):\n    if os.fork() == 0:\n        time.sleep(20)\n"
               "        os._exit(0)",
               "chunks = []\nwhile True:\n    chunks.append(bytearray(2**28))"]


def errors(nb) -> list[str]:
    """The names of the errors the cells of `nb` raised."""
    return [out.ename for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]


def printed(nb) -> str:
    return "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))


def test_a_notebook_reaches_nothing_but_its_own_files(sealed, tmp_path):
    secret = tmp_path / "course" / "source" / "model-solution.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text("the model solution")
    files = tmp_path / "submission"
    files.mkdir()
    (files / "mine.txt").write_text("the student's own file")
    server = Server()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [
        "print(open('mine.txt').read())", "import torch, digitlab; print('torch', torch.__version__)",
        "open('made-here.txt', 'w').write('scratch is writable')",
        *attacks({"the course": secret, "/etc/shadow": Path("/etc/shadow")}, server.port), *LIMIT_CELLS]])
    limits = sandbox.Limits(cell_seconds=10, seconds=240, memory_gb=4, processes=256)
    outcome = sandbox.execute(nb, files, tmp_path / "scratch", limits)
    server.close()
    text = printed(outcome.nb)
    assert outcome.problem == "" and "the student's own file" in text and "torch " in text
    assert (tmp_path / "scratch" / "submission" / "made-here.txt").exists()
    assert "LEAKED" not in text and text.count("blocked:") == 6, text
    assert server.accepted == 0
    assert not (PROJECT_DIR / "sandbox-escape.txt").exists() and not (Path.home() / "sandbox-escape.txt").exists()
    # the endless loop interrupted at the cell timeout, then the process and the memory limits
    assert errors(outcome.nb)[-3:] == ["CellTimeoutError", "BlockingIOError", "MemoryError"], errors(outcome.nb)


def test_the_time_limit_ends_the_whole_sandbox(sealed, tmp_path):
    files = tmp_path / "submission"
    files.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(600)")])
    outcome = sandbox.execute(nb, files, tmp_path / "scratch", sandbox.Limits(cell_seconds=600, seconds=8))
    assert outcome.nb is None and outcome.problem.startswith("time limit")


def test_environment_is_the_course_settings_only(monkeypatch):
    monkeypatch.setenv("DIGITLAB_FAST", "1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "instructor's")
    env = sandbox.environment(threads=3)
    pairs = dict(zip(env[1::3], env[2::3], strict=True))
    assert pairs["DIGITLAB_FAST"] == "1" and pairs["OMP_NUM_THREADS"] == "3" and pairs["HOME"] == str(sandbox.HOME)
    assert "AWS_SECRET_ACCESS_KEY" not in pairs


def test_without_bubblewrap_it_says_what_to_install(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    assert "apt-get install bubblewrap" in sandbox.unavailable()
    with pytest.raises(sandbox.DigitlabError, match="--no-sandbox"):
        sandbox.refuse_unless_available(unsafe=False)
    sandbox.refuse_unless_available(unsafe=True)  # asked for explicitly: allowed


def test_readable_paths_leave_out_notebooks_and_models():
    paths = sandbox.readable()
    assert PROJECT_DIR / "digitlab" in paths
    assert not any(p in (PROJECT_DIR, PROJECT_DIR / "notebooks", PROJECT_DIR / "models", Path.home()) for p in paths)
    assert os.environ.get("DIGITLAB_DATA") is None or Path(os.environ["DIGITLAB_DATA"]).resolve() in paths


def test_mnist_downloaded_into_the_repository_is_readable(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    monkeypatch.setattr(sandbox, "DOWNLOAD_DIR", tmp_path / "data" / "MNIST" / "raw")
    (tmp_path / "data" / "MNIST" / "raw").mkdir(parents=True)
    assert tmp_path / "data" / "MNIST" / "raw" in sandbox.readable()
