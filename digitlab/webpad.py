"""The course website's drawing pad: the course network exported to ONNX for ONNX Runtime Web, and its record.

`make book` exports the committed course network with `export_onnx`, as chapter 06 does, into the site. The
accuracy the pad's page quotes comes from `book/pad/model.json`, written by `python -m digitlab.webpad` (`make
pad-model`): the exported file run by ONNX Runtime on MNIST's 10,000 test digits. The record names the checkpoint
by its SHA-256, so a changed course network stops the build until the record is refreshed.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from torch import nn

from digitlab.checkpoints import checkpoint_path, load
from digitlab.config import RECIPE
from digitlab.errors import DigitlabError
from digitlab.files import write_text
from digitlab.settings import PROJECT_DIR

PAD_DIR = PROJECT_DIR / "book" / "pad"
RECORD = PAD_DIR / "model.json"
MODEL_FILE = "digit_cnn.onnx"
REFRESH = "python -m digitlab.webpad (make pad-model)"


def course_checkpoint() -> Path:
    """The committed course network (`course_model()`'s file); the pad never trains one."""
    path = checkpoint_path("course", RECIPE)
    if not path.exists():
        raise DigitlabError(f"{path} is missing: the website's pad runs the committed course network. Restore it "
                            "(git checkout models/) or train it with the course (notebook 03).")
    return path


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def course_net() -> nn.Module:
    """The course network, loaded from its checkpoint (eval mode)."""
    net, _ = load(course_checkpoint())
    return net.eval()


def export_pad_model(path: str | Path) -> Path:
    """Write the course network as chapter 06 exports it (`export_onnx`: BatchNorm folded, float32)."""
    from digitlab.infer import export_onnx

    return export_onnx(course_net(), path)


def mnist_test_correct(onnx_file: str | Path) -> tuple[int, int]:
    """(digits read right, digits) of an exported network on MNIST's test set, run by ONNX Runtime."""
    from digitlab.data import load_mnist, normalize
    from digitlab.infer import onnx_runner

    X, y = load_mnist("test")
    logits = onnx_runner(onnx_file)(normalize(X))
    return int((logits.argmax(1) == y).sum()), len(y)


def make_record() -> dict:
    """Export the course network and measure it: what `book/pad/model.json` holds."""
    import onnxruntime

    checkpoint = course_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = export_pad_model(Path(tmp) / MODEL_FILE)
        correct, n = mnist_test_correct(onnx_file)
        onnx_sha = sha256(onnx_file)
    return {"checkpoint": checkpoint.relative_to(PROJECT_DIR).as_posix(), "checkpoint_sha256": sha256(checkpoint),
            "onnx_sha256": onnx_sha, "test_correct": correct, "test_images": n,
            "measured_with": f"the exported ONNX file, onnxruntime {onnxruntime.__version__}"}


def read_record(path: str | Path = RECORD) -> dict:
    """The pad's record, checked against the committed course network."""
    path = Path(path)
    if not path.exists():
        raise DigitlabError(f"{path} is missing: write it with {REFRESH}.")
    record = json.loads(path.read_text())
    checkpoint = PROJECT_DIR / record["checkpoint"]
    if checkpoint != course_checkpoint() or sha256(checkpoint) != record["checkpoint_sha256"]:
        raise DigitlabError(f"{path} describes another network than the committed course network "
                            f"({course_checkpoint().name}): refresh it with {REFRESH}.")
    return record


def main() -> None:
    """Refresh `book/pad/model.json` from the committed course network."""
    record = make_record()
    write_text(RECORD, json.dumps(record, indent=2) + "\n")
    accuracy = record["test_correct"] / record["test_images"]
    print(f"{RECORD.relative_to(PROJECT_DIR)}: {record['checkpoint']}, {accuracy:.2%} on {record['test_images']:,} "
          f"MNIST test digits ({record['measured_with']})")


if __name__ == "__main__":
    main()
