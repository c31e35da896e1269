import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import digitlab.__main__ as cli
from digitlab import checkpoints
from digitlab.__main__ import main
from digitlab.checkpoints import course_model, load, load_or_train
from digitlab.config import FAST_RECIPE
from digitlab.errors import DigitlabError, report_user_errors
from digitlab.measure import run_record

OFFLINE = """
import pathlib, sys
import torchvision.datasets
import digitlab.data
torchvision.datasets.MNIST.mirrors = ["http://127.0.0.1:9/"]  # nothing listens there: the network is unreachable
digitlab.data.DOWNLOAD_DIR = pathlib.Path(sys.argv.pop(1))
from digitlab.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(args: list[str], tmp_path, data: str | None = None) -> subprocess.CompletedProcess:
    """Run the command line in a fresh process, offline, with DIGITLAB_DATA set to `data` (default: as now)."""
    env = {**os.environ, "DIGITLAB_DATA": data} if data is not None else os.environ
    return subprocess.run([sys.executable, "-c", OFFLINE, str(tmp_path / "downloads"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["train", "--epochs", "2", "--n-train", "1000", "--batch-size", "32", "--precision", "fp32",
                 "--out", str(out)]) == 0
    assert out.exists()
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Saved" in printed and "test accuracy" in printed
    assert printed.count(" in fp32 (") == 2  # the precision and the CPU kind, after training and from the checkpoint
    assert torch.backends.cpu.get_cpu_capability() in printed
    acc = float(printed.split("test accuracy ")[1].split()[0])
    assert acc > 0.5  # 1,000 images, two epochs: far above the 10% of guessing


@pytest.mark.parametrize(("args", "message"), [
    (["evaluate", "{tmp}/nope.pt"], "No checkpoint at"),
    (["evaluate", "{tmp}/junk.pt"], "junk.pt is not a digitlab checkpoint"),
    (["train", "--epochs", "0", "--out", "{tmp}/m.pt"], "num_epochs must be a whole number of at least 1"),
    (["train", "--batch-size", "-1", "--out", "{tmp}/m.pt"], "batch_size must be"),
    (["train", "--n-train", "0", "--out", "{tmp}/m.pt"], "n_train must be a whole number from 1 to 55,000"),
    (["train", "--device", "tpu9", "--out", "{tmp}/m.pt"], "device 'tpu9' cannot train or run a network"),
    (["train", "--device", "meta", "--out", "{tmp}/m.pt"], "device 'meta' cannot train"),
    (["train", "--seed", "-1", "--out", "{tmp}/m.pt"], "a seed must be a whole number from 0 to 4294967295, not -1"),
    (["train", "--lr", "inf", "--out", "{tmp}/m.pt"], "lr must be a positive, finite number, not inf"),
    (["train", "--lr", "nan", "--out", "{tmp}/m.pt"], "lr must be a positive, finite number, not nan"),
    (["train", "--out", "{tmp}/junk.pt/m.pt"], "cannot write"),
    (["data"], "could not be downloaded"),
])
def test_user_errors_print_one_message_and_no_traceback(tmp_path, args, message, monkeypatch, capsys):
    """In this process, offline, with no MNIST anywhere (the next tests run whole processes)."""
    import torchvision.datasets

    from digitlab import data

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    monkeypatch.setattr(data, "DOWNLOAD_DIR", tmp_path / "downloads")
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "empty"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main([a.format(tmp=tmp_path) for a in args]) == 2   # a traceback would be an exception here
    printed = capsys.readouterr()
    assert printed.err.startswith("error: ") and message in printed.err
    assert "Traceback" not in printed.err + printed.out
    assert not (tmp_path / "m.pt").exists()


def test_a_precision_setting_that_is_none_is_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_PRECISION", "fp64")
    result = run_cli(["train", "--out", str(tmp_path / "m.pt")], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: precision must be 'auto', 'fp32' or 'bf16', not 'fp64'")


def test_data_folder_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "mnist.gz").write_bytes(b"")
    result = run_cli(["data"], tmp_path, data=str(tmp_path / "mnist.gz"))
    assert result.returncode == 2 and "is a file; set it to the folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_interrupted_training_never_replaces_a_finished_model(tmp_path, monkeypatch, small_splits, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"a finished model")
    monkeypatch.setattr(checkpoints, "mnist_splits", lambda n_train=None: small_splits)

    def interrupted_fit(net, *args, **kwargs):  # what fit returns when Ctrl-C stops it in the second epoch
        return {"epoch": [1], "train_loss": [0.5], "val_acc": [0.9], "seconds": [1.0],
                "run": {**run_record("cpu", "fp32"), "interrupted": True}}

    monkeypatch.setattr(checkpoints, "fit", interrupted_fit)
    assert main(["train", "--epochs", "2", "--out", str(out)]) == 130
    assert out.read_bytes() == b"a finished model" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert capsys.readouterr().err.endswith("Interrupted: training stopped after 1 epoch(s); nothing was saved. "
                                            "Run it again to train from the start.\n")


def test_the_course_recipe_trains_the_course_network_bit_for_bit(tmp_path):
    """`digitlab train --recipe course-quick` trains what `course_model()` trains in quick mode, weight for weight."""
    out = tmp_path / "course.pt"
    assert main(["train", "--recipe", "course-quick", "--out", str(out)]) == 0
    net, meta = load(out)
    course, history = course_model(fast=True, progress=False)   # cached in models/, as the notebooks use it
    same_setup = {k: v for k, v in history["run"].items() if k != "interrupted"} == \
        {k: v for k, v in meta["history"]["run"].items() if k != "interrupted"}
    if not same_setup:   # a cached network from another CPU kind, torch or precision: train it here instead
        course, history = load_or_train("course", FAST_RECIPE, models_dir=tmp_path / "models", progress=False)
    assert meta["config"] == dict(FAST_RECIPE) and meta["seed"] == 0
    assert meta["history"]["val_loss"] == history["val_loss"]
    mine, theirs = net.state_dict(), course.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_every_setting_of_a_run_is_an_option_with_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())   # argparse wraps lines where it likes
    names = cli.RunConfig.names("data", "model", "fit", "run")
    for name in names:
        assert f"--{name.replace('_', '-')}" in text, name
    assert "--recipe {default,course,course-quick}" in text and "--no-augment" in text
    assert text.count("(recipes: default") == len(names)


def test_options_change_only_what_they_name():
    args = cli.parse(["train", "--recipe", "course", "--lr", "0.01", "--no-augment", "--precision", "fp32"])
    assert cli.run_config(args) == cli.RECIPES["course"].replace(lr=0.01, augment=False)
    assert cli.run_config(args).precision == "fp32" and cli.run_config(cli.parse(["train"])) == cli.RunConfig()


def test_internal_errors_keep_their_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "load", lambda *a, **k: torch.zeros(0)[1])
    with pytest.raises(IndexError):
        main(["evaluate", str(tmp_path / "x.pt")])


def test_errors_of_the_machine_are_one_line_too(monkeypatch, capsys):
    def full_disk(split):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "load_mnist", full_disk)
    assert main(["data"]) == 1
    assert capsys.readouterr().err == "error: [Errno 28] No space left on device\n"


def test_other_command_lines_report_user_errors_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "digitlab.student", str(tmp_path / "missing.ipynb")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: no notebook at")


@pytest.mark.parametrize(("error", "code"), [(DigitlabError("bad setting"), 2), (PermissionError("no access"), 1),
                                             (KeyboardInterrupt(), 130)])
def test_report_user_errors(error, code, capsys):
    def command():
        raise error

    assert report_user_errors(command) == code
    assert capsys.readouterr().err.startswith(("error: ", "Interrupted"))


def test_report_user_errors_lets_bugs_raise():
    with pytest.raises(ZeroDivisionError):
        report_user_errors(lambda: 1 / 0)


def test_the_digitlab_command_is_installed_with_the_package():
    command = Path(sys.executable).parent / "digitlab"
    if not command.exists():
        pytest.skip("digitlab is not installed in this Python's environment (pip install -e .)")
    done = subprocess.run([str(command), "train", "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("usage: digitlab train")
