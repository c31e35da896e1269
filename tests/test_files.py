import pytest

from digitlab.files import atomic_path, write_text


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
