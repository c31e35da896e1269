import subprocess
import sys
from pathlib import Path

import pytest

from digitlab.errors import DigitlabError
from digitlab.files import atomic_path, check_writable, write_text


def test_write_text_replaces_whole_files(tmp_path):
    path = tmp_path / "sub" / "r.md"
    write_text(path, "one")
    write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["r.md"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "r.md"
    write_text(path, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.md"]


KILLED_WRITER = """
import os, sys
from digitlab.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    open(tmp, "w").write("half")
    os._exit(9)  # dies like a SIGKILL: no cleanup runs
"""


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path):
    path = tmp_path / "r.md"
    write_text(path, "old")
    assert subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)]).returncode == 9
    assert len(list(tmp_path.iterdir())) == 2  # the killed writer's temporary file
    with atomic_path(path) as live:  # a writer still at work keeps its temporary file
        write_text(path, "other")
        Path(live).write_text("new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["r.md"]


@pytest.mark.parametrize("name", ["folder", "file/r.md"])
def test_check_writable_refuses_what_cannot_be_written(tmp_path, name):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    with pytest.raises(DigitlabError, match="cannot write"):
        check_writable(tmp_path / name)
    check_writable(tmp_path / "new" / "r.md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "new"]


def test_a_link_is_kept_and_its_target_written(tmp_path):
    target = tmp_path / "real" / "results.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "results.jsonl"
    link.symlink_to(target)
    write_text(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    dangling = tmp_path / "later.md"
    dangling.symlink_to(tmp_path / "real" / "later.md")   # a link to a file not made yet: made there
    write_text(dangling, "x")
    assert dangling.is_symlink() and (tmp_path / "real" / "later.md").read_text() == "x"


def test_a_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "shared.md"
    path.write_text("old")
    path.chmod(0o664)
    write_text(path, "new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o664


def test_what_is_not_a_regular_file_is_refused(tmp_path):
    import os

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path in (pipe, Path("/dev/null")):
        with pytest.raises(DigitlabError, match="not a regular file"):
            write_text(path, "x")
        with pytest.raises(DigitlabError, match="not a regular file"):
            check_writable(path)
    assert pipe.exists() and not pipe.is_file()
