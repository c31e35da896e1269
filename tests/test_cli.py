import subprocess
import sys

import torch

from digitlab.__main__ import main


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


def test_evaluate_missing_checkpoint_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "digitlab", "evaluate", str(tmp_path / "nope.pt")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "No checkpoint at" in result.stderr
