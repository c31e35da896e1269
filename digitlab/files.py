"""Write files whole or not at all: a crash or Ctrl-C never leaves half a file behind."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from digitlab.errors import DigitlabError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; writers there must take turns
    fcntl = None


def alive(pid: int) -> bool:
    """Whether process `pid` is running (POSIX; elsewhere every process counts as alive)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files of `path` left by writers that were killed; return what was deleted."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for tmp in path.parent.iterdir():
        parts = tmp.name[len(prefix):].split(".") if tmp.name.startswith(prefix) else []
        if len(parts) != 3 or parts[2] != "tmp" or not parts[0].isdigit():  # not `<pid>.<random>.tmp`
            continue
        if int(parts[0]) != os.getpid() and not alive(int(parts[0])):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def write_target(path: str | Path) -> tuple[Path, int]:
    """Where writing `path` lands and the permissions it gets: a link's target (links are kept), keeping the
    permissions of a file already there; a DigitlabError for what is not a regular file."""
    target = Path(os.path.realpath(path))
    if not target.exists():
        return target, 0o644   # mkstemp makes files private; results and checkpoints are ordinary files
    if not target.is_file():
        kind = "a folder" if target.is_dir() else "not a regular file (a device, a pipe or a socket)"
        raise DigitlabError(f"cannot write {path}: {'its target ' + str(target) if target != Path(path) else 'it'} "
                            f"is {kind}; give the path of a file.")
    return target, stat.S_IMODE(target.stat().st_mode)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary file name next to `path`; it replaces `path` only if the block completes.

    A symbolic link stays: its target is replaced. A file keeps its permissions.
    """
    path, mode = write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    # The writer's process id in the name lets a later run find and delete it if the writer was killed.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def check_writable(path: str | Path) -> None:
    """Refuse now, with a DigitlabError, a `path` that cannot be written, so a long run does not fail at its end."""
    path = Path(path)
    if path.is_dir():
        raise DigitlabError(f"cannot write {path}: it is a folder; give a file name such as {path / 'model.pt'}.")
    path, _ = write_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise DigitlabError(f"cannot write {path}: {err.strerror or err}.") from None


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s folder for the block: read-modify-write of `path` by several processes."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
