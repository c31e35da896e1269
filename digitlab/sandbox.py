"""The grading sandbox: a submission's notebook runs where it reads only what it needs and writes only its scratch.

Linux namespaces through bubblewrap (`bwrap`): a mount namespace that shows the Python installation, the digitlab
package, the committed ablation results and MNIST read-only, and the submission's scratch folder read-write, and
nothing else (no course folder, no other submission, no gradebook, no home folder); no network (a network
namespace with loopback only); its own process namespace, killed whole when the grader stops; and limits on time,
memory, processes and file size. Run as root, the submission runs as an unprivileged user of its own.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat

from digitlab.errors import DigitlabError
from digitlab.settings import DOWNLOAD_DIR, MODELS_DIR, PROJECT_DIR, RESULTS_DIR

HOME = Path("/home/student")       # the scratch folder, as the submission sees it
SEALED = Path(__file__).with_name("sealed.py")
FIRST_UID = 61000                  # run as root, worker slot k grades as user FIRST_UID + k
MAX_NOTEBOOK_BYTES = 200 * 2**20   # an executed notebook larger than this is refused
MAX_LOG_BYTES = 2**20              # what is kept of the sandbox's own stdout and stderr

INSTALL_HINT = ("Install bubblewrap: `sudo apt-get install bubblewrap` (Debian, Ubuntu) or `sudo dnf install "
                "bubblewrap` (Fedora). Without Linux, grade in a container (notebooks/README.md, 'Grading').")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one submission may use: seconds per cell and in all, memory per process, processes and threads."""

    cell_seconds: int = 600
    seconds: int = 1800
    memory_gb: float = 8.0
    processes: int = 512
    file_gb: float = 2.0


@dataclasses.dataclass
class Outcome:
    """An executed notebook (None if the sandbox gave none back) and what went wrong, in words."""

    nb: nbformat.NotebookNode | None
    problem: str = ""
    log: str = ""


def unavailable() -> str:
    """Why the sandbox cannot run on this machine, or '' if it can."""
    if sys.platform != "linux":
        return f"the grading sandbox needs Linux namespaces, and this is {sys.platform}. {INSTALL_HINT}"
    if shutil.which("bwrap") is None:
        return f"bubblewrap (bwrap) is not installed. {INSTALL_HINT}"
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--dev", "/dev",
                            "--proc", "/proc", *_user_options(), "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return (f"bwrap cannot create namespaces here ({probe.stderr.strip()}): user namespaces may be switched "
                f"off (sysctl kernel.unprivileged_userns_clone=1), or run the grader as root. {INSTALL_HINT}")
    return ""


def _user_options() -> list[str]:
    """bwrap's options for the user: as root, no user namespace (the submission drops to its own user);
    otherwise one, in which the submission keeps the instructor's user id (and only the files bound in)."""
    return [] if os.geteuid() == 0 else ["--unshare-user"]


def readable() -> list[Path]:
    """What a submission may read: this Python and its packages, digitlab's code, the committed results, MNIST
    (DIGITLAB_DATA's folder, and the repository's download folder if MNIST was downloaded there)."""
    paths = {Path(sys.base_prefix), Path(sys.prefix), PROJECT_DIR / "digitlab", RESULTS_DIR, DOWNLOAD_DIR}
    data = os.environ.get("DIGITLAB_DATA")
    if data:
        paths.add(Path(data).resolve())
    return sorted(p.resolve() for p in paths if p.exists())


def prepare_scratch(scratch: Path, files_from: Path, uid: int | None) -> None:
    """Make `scratch` the submission's home: its own files in `submission/`, a copy of the course networks in
    `models/`, a matplotlib font cache, an empty `tmp/`; owned by `uid` where one is given."""
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "tmp").mkdir(parents=True)
    shutil.copytree(files_from, scratch / "submission", ignore=shutil.ignore_patterns("*.ipynb"))
    (scratch / "models").mkdir()
    for model in MODELS_DIR.glob("course-*.pt"):  # copies: the submission may write models/, never the originals
        shutil.copy(model, scratch / "models" / model.name)
    fonts = Path(os.environ.get("MPLCONFIGDIR", Path.home() / ".cache" / "matplotlib"))
    for cache in fonts.glob("fontlist-*.json"):
        (scratch / ".config" / "matplotlib").mkdir(parents=True, exist_ok=True)
        shutil.copy(cache, scratch / ".config" / "matplotlib" / cache.name)
    if uid is not None:
        for path in [scratch, *scratch.rglob("*")]:
            os.lchown(path, uid, uid)


def environment(threads: int) -> list[str]:
    """bwrap's options for the submission's environment: nothing inherited but the course's own settings."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(HOME),
           "LANG": "C.UTF-8", "TMPDIR": "/tmp", "MPLCONFIGDIR": str(HOME / ".config" / "matplotlib"),
           "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    env |= {k: v for k, v in os.environ.items() if k.startswith("DIGITLAB_")}
    return [arg for k, v in sorted(env.items()) for arg in ("--setenv", k, v)]


def command(scratch: Path, limits: Limits, uid: int | None, threads: int, result_fd: int) -> list[str]:
    """The bwrap command line that executes a notebook (on stdin) in the sandbox and writes it to `result_fd`."""
    binds = ["--ro-bind", "/usr", "/usr", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--ro-bind-try", "/etc/fonts", "/etc/fonts", "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
             "--ro-bind-try", "/etc/localtime", "/etc/localtime", "--ro-bind-try", "/sys/devices/system/cpu",
             "/sys/devices/system/cpu"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        link = Path("/") / top
        if link.is_symlink():
            binds += ["--symlink", os.readlink(link), str(link)]
        elif link.is_dir():
            binds += ["--ro-bind", str(link), str(link)]
    for path in readable():
        binds += ["--ro-bind", str(path), str(path)]
    binds += ["--bind", str(scratch), str(HOME), "--bind", str(scratch / "tmp"), "/tmp",
              "--bind", str(scratch / "models"), str(MODELS_DIR)]
    # bwrap makes the folders above a mount point private (0700): open them to the submission's own user
    ancestors = {a for dest in binds[2::3] for a in Path(dest).parents} - {Path("/")}
    folders = [arg for folder in sorted(map(str, ancestors)) for arg in ("--perms", "0755", "--dir", folder)]
    run = [sys.executable, str(SEALED), str(result_fd), str(limits.cell_seconds)]
    if uid is not None:
        run = [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *run]
    return ["bwrap", *folders, *binds, "--dev", "/dev", "--proc", "/proc", "--unshare-ipc", "--unshare-pid",
            "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", *_user_options(), "--hostname", "sandbox",
            "--die-with-parent", "--new-session", "--clearenv", *environment(threads),
            *(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if uid is not None else []),
            "--chdir", str(HOME / "submission"), *run]


def _set_limits(limits: Limits) -> None:
    """In the child before bwrap starts: the limits every process of the submission inherits."""
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    memory = int(limits.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    size = int(limits.file_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _read_capped(stream, cap: int, into: list) -> None:
    """Read `stream` to its end, keeping at most `cap` bytes (the rest is read and dropped)."""
    kept = 0
    while chunk := stream.read(65536):
        if kept < cap:
            into.append(chunk[:cap - kept])
        kept += len(chunk)
    into.append(b"" if kept <= cap else b"\n[... more output dropped]")


def execute(nb: nbformat.NotebookNode, files_from: Path, scratch: Path, limits: Limits = Limits(),
            slot: int = 0, threads: int = 1) -> Outcome:
    """Execute `nb` in a fresh sandbox whose home is `scratch` (its working folder a copy of `files_from`)."""
    uid = FIRST_UID + slot if os.geteuid() == 0 else None
    prepare_scratch(scratch, files_from, uid)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(command(scratch, limits, uid, threads, write_end), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(write_end,),
                            preexec_fn=lambda: _set_limits(limits))
    os.close(write_end)
    result, log = [], []
    readers = [threading.Thread(target=_read_capped, args=(os.fdopen(read_end, "rb"), MAX_NOTEBOOK_BYTES, result)),
               threading.Thread(target=_read_capped, args=(proc.stdout, MAX_LOG_BYTES, log))]
    for reader in readers:
        reader.start()
    try:
        proc.stdin.write(nbformat.writes(nb).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    problem = ""
    try:
        proc.wait(timeout=limits.seconds)
    except subprocess.TimeoutExpired:
        proc.kill()  # bwrap's --die-with-parent takes every process of the submission with it
        proc.wait()
        problem = f"time limit: the notebook ran longer than {limits.seconds} s"
    for reader in readers:
        reader.join()
    text = b"".join(log).decode(errors="replace")
    data = b"".join(result)
    if problem:
        return Outcome(None, problem, text)
    if len(data) > MAX_NOTEBOOK_BYTES:
        return Outcome(None, f"output limit: the executed notebook is over {MAX_NOTEBOOK_BYTES // 2**20} MB", text)
    try:
        return Outcome(nbformat.reads(data.decode(), as_version=4), "", text)
    except Exception:  # noqa: BLE001 (whatever the sandbox sent back, it is not a notebook)
        return Outcome(None, f"the sandbox ended without a notebook (exit {proc.returncode})", text)


def refuse_unless_available(unsafe: bool) -> None:
    """Raise a DigitlabError saying what is missing if the sandbox cannot run and `unsafe` was not asked for."""
    why = unavailable()
    if why and not unsafe:
        raise DigitlabError(f"cannot grade in a sandbox: {why} To grade without one (each submission then runs "
                            "with your rights, as plain nbgrader does), pass --no-sandbox.")
