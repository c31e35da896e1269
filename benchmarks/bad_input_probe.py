"""A probe of bad input across digitlab's entry points: what a careless or hostile user hands it, and what it does.

`python benchmarks/bad_input_probe.py [--out FILE]` tries every case below (library calls, the command lines,
the upload path of chapter 06's widget, the student and grading tools) and writes a table: each case's outcome
and the first line of what it said. Outcomes:

- refused: an error raised by digitlab's own code (or a command's `error:` line) that says what was wrong;
- handled: it worked, and the result is right;
- silent: it worked, but the result is wrong, and nothing said so;
- cryptic: an error from deep inside a library, or a traceback at the command line;
- lost: a file that was there before is changed or gone;
- hang: no answer within the case's time limit.

It needs MNIST (DIGITLAB_DATA) and root (it mounts a 64 KB file system to fill up), and writes only under a
temporary folder.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = str(ROOT / "digitlab")
TIME_LIMIT = 120   # seconds per case


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def _raised_by_digitlab(err: BaseException) -> bool:
    """Whether `err` comes from a `raise` in digitlab's own code (not from a library it called)."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(PACKAGE) and (frames[-1].line or "").startswith("raise")


def _first_line(text: str) -> str:
    line = next((s for s in str(text).strip().splitlines() if s.strip()), "")
    return line.replace("|", "/")[:150]


class Probe:
    def __init__(self, tmp: Path):
        self.tmp, self.rows, self.n = tmp, [], 0

    def path(self, name: str) -> Path:
        self.n += 1
        folder = self.tmp / f"case{self.n:03}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def record(self, area: str, case: str, outcome: str, said: str) -> None:
        self.rows.append((area, case, outcome, _first_line(said)))
        print(f"{len(self.rows):3} {outcome:8} {area:12} {case}: {_first_line(said)[:90]}", flush=True)

    def lib(self, area: str, case: str, call, ok=None, keep: tuple[Path, ...] = (), expect: str = "") -> None:
        """A library call: refused if digitlab raised (naming `expect`, the real cause, if given), silent if
        `ok(result)` is False, lost if `keep` changed."""
        before = {p: _digest(p) for p in keep}
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TIME_LIMIT)
        try:
            result = call()
        except Hang:
            self.record(area, case, "hang", f"no answer in {TIME_LIMIT} s")
            return
        except BaseException as err:  # noqa: BLE001 (every outcome is the probe's to classify)
            signal.alarm(0)
            lost = [p for p in keep if _digest(p) != before[p]]
            if lost:
                self.record(area, case, "lost", f"{lost[0].name} changed; {type(err).__name__}: {err}")
            elif isinstance(err, OSError) and err.strerror and not isinstance(err, IsADirectoryError):
                self.record(area, case, "refused", f"{type(err).__name__}: {err}")   # the system's own words
            elif isinstance(err, KeyboardInterrupt) and str(err):
                self.record(area, case, "refused", f"KeyboardInterrupt: {err}")
            elif _raised_by_digitlab(err) and expect.lower() in str(err).lower() and not isinstance(
                    err, (AssertionError, AttributeError, KeyError, IndexError, NameError)):
                self.record(area, case, "refused", f"{type(err).__name__}: {err}")
            else:
                self.record(area, case, "cryptic", f"{type(err).__name__}: {err}")
            return
        finally:
            signal.alarm(0)
        lost = [p for p in keep if _digest(p) != before[p]]
        if lost:
            self.record(area, case, "lost", f"{lost[0].name} changed without a word")
        elif ok is None or ok(result):
            self.record(area, case, "handled", f"accepted: {_describe(result)}")
        else:
            self.record(area, case, "silent", f"accepted: {_describe(result)}")

    def cli(self, area: str, case: str, args: list[str], env: dict | None = None, ok=None,
            keep: tuple[Path, ...] = (), expect: str = "") -> None:
        """A command line: refused on an `error:` line, cryptic on a traceback, silent if `ok(stdout)` is False."""
        before = {p: _digest(p) for p in keep}
        try:
            done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=TIME_LIMIT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=self.tmp)
        except subprocess.TimeoutExpired:
            self.record(area, case, "hang", f"no answer in {TIME_LIMIT} s")
            return
        lost = [p for p in keep if _digest(p) != before[p]]
        if lost:
            self.record(area, case, "lost", f"{lost[0].name} changed; exit {done.returncode}")
        elif done.returncode == 0:
            outcome = "handled" if ok is None or ok(done.stdout) else "silent"
            self.record(area, case, outcome, f"exit 0: {_first_line(done.stdout)}")
        elif "Traceback" in done.stderr or expect.lower() not in done.stderr.lower():
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "nothing said"
            self.record(area, case, "cryptic", f"exit {done.returncode}: {last}")
        else:
            self.record(area, case, "refused", f"exit {done.returncode}: {done.stderr}")


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest() + (" link" if path.is_symlink() else "")
    except OSError:
        return None


def _describe(result) -> str:
    if isinstance(result, torch.Tensor):
        return f"tensor {list(result.shape)} {result.flatten()[:3].tolist()}"
    if isinstance(result, tuple):
        return "(" + ", ".join(_describe(r) for r in result[:3]) + ")"
    return repr(result)[:100]


# --- helpers making bad input ---------------------------------------------------------------------------------

def idx(shape: tuple[int, ...], payload: bytes | None = None, magic: bytes = b"\x00\x00\x08") -> bytes:
    header = magic + bytes([len(shape)]) + b"".join(int(n).to_bytes(4, "big") for n in shape)
    return header + (payload if payload is not None else bytes(int(np.prod(shape, dtype=object))))


def mnist_case(p: Probe, case: str, content: bytes | None, *, folder: bool = False, gz: bool = False,
               loop: bool = False) -> None:
    from digitlab import data

    stem = "t10k-labels-idx1-ubyte"
    target = p.path(stem + (".gz" if gz else ""))
    if folder:
        target.mkdir()
    elif loop:
        target.symlink_to(target)
    elif content is not None:
        target.write_bytes(content)
    os.environ["DIGITLAB_DATA"] = str(target.parent)
    try:
        p.lib("MNIST files", case, lambda: data.mnist_file(stem, download=False),
              ok=lambda a: isinstance(a, np.ndarray) and a.shape == (10_000,) and int(a.max()) <= 9)
    finally:
        os.environ["DIGITLAB_DATA"] = DATA


def small_disk(p: Probe) -> Path:
    """A 64 KB file system (tmpfs, mounted as root) that a checkpoint does not fit on."""
    folder = p.path("disk")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    MOUNTS.append(folder)
    return folder


MOUNTS: list[Path] = []


def picture(kind: str) -> np.ndarray:
    """Pictures without one clear digit (uint8, white paper, dark ink)."""
    rng = np.random.default_rng(0)
    if kind == "white":
        return np.full((120, 100), 255, np.uint8)
    if kind == "black":
        return np.zeros((120, 100), np.uint8)
    if kind == "noise":
        return rng.integers(0, 256, (120, 100)).astype(np.uint8)
    if kind == "grey paper":
        return np.clip(128 + rng.normal(0, 2, (120, 100)), 0, 255).astype(np.uint8)
    if kind == "one dark pixel":
        x = np.full((3, 3), 255, np.uint8)
        x[1, 1] = 0
        return x
    raise ValueError(kind)


def two_digits() -> np.ndarray:
    from digitlab.data import load_mnist

    X, y = load_mnist("test")
    three, seven = X[(y == 3).nonzero()[0][0]].numpy(), X[(y == 7).nonzero()[0][0]].numpy()
    page = np.zeros((40, 80), np.uint8)
    page[6:34, 6:34], page[6:34, 44:72] = three, seven
    return 255 - page


def mnist_digit(label: int) -> np.ndarray:
    from digitlab.data import load_mnist

    X, y = load_mnist("test")
    return 255 - X[(y == label).nonzero()[0][0]].numpy()


def jpeg_rotated(upright: np.ndarray, path: Path) -> Path:
    from PIL import Image

    big = Image.fromarray(upright).resize((upright.shape[1] * 4, upright.shape[0] * 4))
    exif = Image.Exif()
    exif[0x0112] = 6
    big.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    return path


# --- the cases ---------------------------------------------------------------------------------------------------

def mnist_cases(p: Probe) -> None:
    labels = idx((10_000,))
    mnist_case(p, "empty file", b"")
    mnist_case(p, "text instead of IDX", b"hello, these are not labels\n")
    mnist_case(p, "wrong magic number", idx((10_000,), magic=b"\x01\x02\x08"))
    mnist_case(p, "IDX of floats (type 0x0d)", idx((10_000,), bytes(40_000), magic=b"\x00\x00\x0d"))
    mnist_case(p, "header cut short", labels[:6])
    mnist_case(p, "header sizes that overflow", idx((2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1), b""))
    mnist_case(p, "data cut short", labels[:-100])
    mnist_case(p, "extra bytes at the end", labels + b"\x00" * 10)
    mnist_case(p, "right size, other labels (all 0)", labels)
    mnist_case(p, "labels out of range (all 11)", idx((10_000,), bytes([11]) * 10_000))
    mnist_case(p, "zero dimensions", b"\x00\x00\x08\x00")
    mnist_case(p, "gzip that is corrupted", b"\x1f\x8b\x08\x00garbage", gz=True)
    mnist_case(p, "gzip of other labels", gzip.compress(labels), gz=True)
    mnist_case(p, "a folder of that name", None, folder=True)
    mnist_case(p, "a link to itself", None, loop=True)
    os.environ["DIGITLAB_DATA"] = str(p.path("missing-folder"))
    from digitlab import data

    p.lib("MNIST files", "DIGITLAB_DATA names no folder", lambda: data.mnist_file("t10k-labels-idx1-ubyte", False))
    file = p.path("a-file")
    file.write_text("x")
    os.environ["DIGITLAB_DATA"] = str(file)
    p.lib("MNIST files", "DIGITLAB_DATA names a file", lambda: data.mnist_file("t10k-labels-idx1-ubyte", False))
    os.environ["DIGITLAB_DATA"] = DATA
    p.lib("MNIST files", "load_mnist('validation')", lambda: data.load_mnist("validation"))
    p.lib("MNIST files", "mnist_splits(n_train=0)", lambda: data.mnist_splits(n_train=0),
          ok=lambda s: len(s["train"][1]) > 0)
    p.lib("MNIST files", "mnist_splits(n_train=10**9)", lambda: data.mnist_splits(n_train=10**9),
          ok=lambda s: False)


def checkpoint_cases(p: Probe) -> None:
    from digitlab import checkpoints
    from digitlab.config import RunConfig
    from digitlab.models import DigitRecognitionCNN

    good = DigitRecognitionCNN().state_dict()

    def saved(content) -> Path:
        path = p.path("net.pt")
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            torch.save(content, path)
        return path

    def load_case(case, content, ok=None, device="cpu", expect=""):
        path = saved(content)
        p.lib("checkpoints", case, lambda: checkpoints.load(path, device=device), ok=ok, expect=expect)

    def finite(result):
        return all(torch.isfinite(t).all() for t in result[0].state_dict().values() if t.is_floating_point())

    whole = {"arch": "DigitRecognitionCNN", "config": {}, "state_dict": good, "meta": {}}
    load_case("no file", None)
    load_case("empty file", b"")
    load_case("text file", b"not a checkpoint")
    load_case("zip cut in half", saved(whole).read_bytes()[:5000])
    load_case("a bare state_dict of the paper's network", good, ok=finite)
    load_case("unknown architecture", {**whole, "arch": "ResNet50"})
    load_case("an option the network lacks", {**whole, "config": {"width": 3}})
    load_case("options that are a list", {**whole, "config": [1, 2]})
    load_case("a tensor for the state_dict", {**whole, "state_dict": torch.zeros(3)})
    load_case("a record (meta) that is a list", {**whole, "meta": [1]})
    load_case("NaN weights", {**whole, "state_dict": {**good, "fc2.weight": torch.full((10, 128), float("nan"))}},
              ok=finite)
    infinite = {**good, "conv1.weight": good["conv1.weight"] * float("inf")}
    load_case("infinite weights", {**whole, "state_dict": infinite}, ok=finite)
    load_case("a weight missing", {**whole, "state_dict": {k: v for k, v in good.items() if k != "fc2.bias"}})
    load_case("a weight of the wrong shape", {**whole, "state_dict": {**good, "fc2.bias": torch.zeros(11)}})
    load_case("weights on the 'meta' device", {**whole, "state_dict": {k: v.to("meta") for k, v in good.items()}},
              expect="meta")
    load_case("an object pickled inside", {**whole, "meta": {"x": Exception("payload")}})
    load_case("load onto a device this machine lacks (cuda)", whole, device="cuda" if not torch.cuda.is_available()
              else "cuda:99", expect="device")
    load_case("load onto an unknown device", whole, device="gpu0", expect="device")
    folder = p.path("folder.pt")
    folder.mkdir()
    p.lib("checkpoints", "a folder", lambda: checkpoints.load(folder))
    tiny = RunConfig(n_train=64, num_epochs=1)
    models = p.path("models")
    models.mkdir()
    path = checkpoints.checkpoint_path("tiny", tiny, 0, models)
    torch.save({**whole, "meta": {"note": "no history"}}, path)
    p.lib("checkpoints", "load_or_train finds a checkpoint without a history",
          lambda: checkpoints.load_or_train("tiny", tiny, models_dir=models, progress=False),
          ok=lambda r: isinstance(r[1], dict) and "epoch" in r[1])
    torch.save({**whole, "meta": {"history": {"epoch": [1]}}}, path)
    p.lib("checkpoints", "load_or_train finds a partial history",
          lambda: checkpoints.load_or_train("tiny", tiny, models_dir=models, progress=False),
          ok=lambda r: {"train_loss", "val_acc"} <= set(r[1]))
    out = p.path("out.pt")
    p.lib("checkpoints", "save to a folder path", lambda: checkpoints.save(DigitRecognitionCNN(), out.parent))
    fifo = p.path("pipe.pt")
    os.mkfifo(fifo)
    p.lib("checkpoints", "save over a named pipe", lambda: checkpoints.save(DigitRecognitionCNN(), fifo),
          ok=lambda r: False, expect="not a regular file")
    full = small_disk(p)
    old = full / "old.pt"
    old.write_bytes(b"the previous checkpoint")
    p.lib("checkpoints", "save on a full disk (64 KB)", lambda: checkpoints.save(DigitRecognitionCNN(), old),
          ok=lambda r: False, keep=(old,))


def config_cases(p: Probe) -> None:
    from digitlab.config import RunConfig

    def case(name, **kwargs):
        p.lib("RunConfig", name, lambda: RunConfig(**kwargs), ok=lambda c: False)

    case("lr=inf", lr=float("inf"))
    case("lr=nan", lr=float("nan"))
    case("lr=-0.1", lr=-0.1)
    case("lr=0", lr=0.0)
    case("lr='0.1' (text)", lr="0.1")
    case("weight_decay=nan", weight_decay=float("nan"))
    case("weight_decay=-1", weight_decay=-1.0)
    case("num_epochs=0", num_epochs=0)
    case("num_epochs=2.5", num_epochs=2.5)
    case("batch_size=0", batch_size=0)
    case("batch_size=True", batch_size=True)
    case("n_train=0", n_train=0)
    case("n_train=10**9", n_train=10**9)
    case("dropout1=1.5", dropout1=1.5)
    case("dropout2=nan", dropout2=float("nan"))
    case("label_smoothing=1.0", label_smoothing=1.0)
    case("optimizer='adamw2'", optimizer="adamw2")
    case("schedule='cosine'", schedule="cosine")
    case("typed_digits=-1", typed_digits=-1)
    case("an unknown setting", width=3)


def training_cases(p: Probe) -> None:
    from digitlab import train
    from digitlab.models import DigitRecognitionCNN

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    net = DigitRecognitionCNN()

    def finite_number(r):
        return all(np.isfinite(v) for v in r)

    bad = X.clone()
    bad[0, 0, 0, 0] = float("nan")
    p.lib("training", "evaluate: a NaN pixel", lambda: train.evaluate(net, bad, y), ok=lambda r: False)
    inf = X.clone()
    inf[3] = float("inf")
    p.lib("training", "evaluate: infinite pixels", lambda: train.evaluate(net, inf, y), ok=lambda r: False)
    p.lib("training", "evaluate: 64 images, 63 labels", lambda: train.evaluate(net, X, y[:63]))
    p.lib("training", "evaluate: label 10", lambda: train.evaluate(net, X, torch.full((64,), 10)))
    p.lib("training", "evaluate: no images", lambda: train.evaluate(net, X[:0], y[:0]))
    p.lib("training", "evaluate: float labels", lambda: train.evaluate(net, X, y.float()), ok=finite_number)
    p.lib("training", "evaluate: images [64, 28, 28]", lambda: train.evaluate(net, X[:, 0], y), ok=finite_number)

    def fit(**kwargs):
        settings = {"num_epochs": 1, "batch_size": 64, "progress": False, **kwargs}
        return lambda: train.fit(DigitRecognitionCNN(), (X, y), **settings)

    def trained_ok(history):
        return all(np.isfinite(history["train_loss"]))

    p.lib("training", "fit: lr=1e9, one batch per epoch", fit(lr=1e9), ok=lambda h: False)
    p.lib("training", "fit: lr=inf", fit(lr=float("inf")), ok=lambda h: False)
    p.lib("training", "fit: lr=nan", fit(lr=float("nan")), ok=lambda h: False)
    p.lib("training", "fit: a NaN pixel", lambda: train.fit(DigitRecognitionCNN(), (bad, y), num_epochs=1,
                                                             progress=False), ok=lambda h: False)
    p.lib("training", "fit: seed=-1", fit(seed=-1), ok=trained_ok)
    p.lib("training", "fit: seed=2**70", fit(seed=2**70), ok=trained_ok, expect="seed")
    p.lib("training", "fit: weight_decay=nan", fit(weight_decay=float("nan")), ok=lambda h: False)
    p.lib("training", "fit: device='meta'", fit(device="meta"), ok=lambda h: False, expect="meta")
    p.lib("training", "fit: precision='fp64'", fit(precision="fp64"), ok=lambda h: False)
    p.lib("training", "set_seed(-1)", lambda: train.set_seed(-1), expect="seed")
    p.lib("training", "set_seed(2**70)", lambda: train.set_seed(2**70), expect="seed")
    p.lib("training", "get_device('bogus')", lambda: train.get_device("bogus"))
    p.lib("training", "get_device('cuda') without CUDA", lambda: train.get_device("cuda"),
          ok=lambda d: torch.cuda.is_available())
    p.lib("training", "predict: 27x27 images", lambda: train.predict(net, torch.rand(2, 27, 27)))
    p.lib("training", "predict: 0-255 floats", lambda: train.predict(net, torch.rand(2, 28, 28) * 255))
    p.lib("training", "predict: NaN image", lambda: train.predict(net, torch.full((1, 28, 28), float("nan"))))
    p.lib("training", "predict: a list", lambda: train.predict(net, [[0.0] * 28] * 28))


def picture_cases(p: Probe, predictor) -> None:
    from PIL import Image

    from digitlab.preprocess import to_mnist
    from digitlab.widgets import classify_upload

    for kind in ("white", "black", "noise", "grey paper", "one dark pixel"):
        p.lib("pictures", f"to_mnist: {kind}", lambda kind=kind: to_mnist(picture(kind)), ok=lambda r: False)
    p.lib("pictures", "to_mnist: a 3 and a 7 side by side", lambda: to_mnist(two_digits()), ok=lambda r: False)
    seven = mnist_digit(7)
    rotated = jpeg_rotated(seven, p.path("seven.jpg"))
    p.lib("pictures", "to_mnist: phone photo of a 7 (EXIF orientation)",
          lambda: predictor.predict(to_mnist(rotated)[None]), ok=lambda r: int(r[0]) == 7)
    p.lib("pictures", "upload: phone photo of a 7 (EXIF orientation)",
          lambda: classify_upload(rotated.read_bytes(), predictor)[1], ok=lambda r: int(r.argmax()) == 7)
    p.lib("pictures", "to_mnist: 1x1 picture", lambda: to_mnist(np.zeros((1, 1), np.uint8)))
    p.lib("pictures", "to_mnist: float pixels 0-255", lambda: to_mnist(seven.astype(np.float32)))
    p.lib("pictures", "to_mnist: NaN pixels", lambda: to_mnist(np.full((30, 30), np.nan, np.float32)))
    p.lib("pictures", "to_mnist: int64 pixels", lambda: to_mnist(seven.astype(np.int64)),
          ok=lambda r: predictor.predict(r[None])[0] == 7)
    text = p.path("note.png")
    text.write_text("not a picture")
    p.lib("pictures", "to_mnist: a text file named .png", lambda: to_mnist(text))
    png = p.path("seven.png")
    Image.fromarray(seven).save(png)
    cut = p.path("cut.png")
    cut.write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])
    p.lib("pictures", "to_mnist: a PNG cut in half", lambda: to_mnist(cut))
    p.lib("pictures", "to_mnist: a missing file", lambda: to_mnist(p.path("missing.png")))
    p.lib("pictures", "to_mnist: a 16-bit PNG of a 7", lambda: to_mnist(Image.fromarray(seven.astype(np.uint16) * 257)),
          ok=lambda r: predictor.predict(r[None])[0] == 7)
    p.lib("pictures", "to_mnist: a CMYK picture of a 7", lambda: to_mnist(Image.fromarray(seven).convert("CMYK")),
          ok=lambda r: predictor.predict(r[None])[0] == 7)
    transparent = Image.fromarray(np.stack([np.zeros_like(seven)] * 3 + [255 - seven], -1), "RGBA")
    p.lib("pictures", "to_mnist: ink on a transparent background", lambda: to_mnist(transparent),
          ok=lambda r: predictor.predict(r[None])[0] == 7)
    p.lib("pictures", "to_mnist: a string that is no path", lambda: to_mnist("seven"))
    p.lib("pictures", "upload: bytes that are no picture", lambda: classify_upload(b"\x00\x01garbage", predictor))
    p.lib("pictures", "upload: no bytes", lambda: classify_upload(b"", predictor))
    buffer = io.BytesIO()
    Image.fromarray(picture("white")).save(buffer, format="PNG")
    p.lib("pictures", "upload: a blank page", lambda: classify_upload(buffer.getvalue(), predictor),
          ok=lambda r: False)


def predictor_cases(p: Probe, predictor) -> None:
    from digitlab.infer import Predictor
    from digitlab.models import DigitRecognitionCNN

    no_digit = {"all black": torch.zeros(28, 28), "all white": torch.ones(28, 28),
                "uniform noise": torch.rand(28, 28, generator=torch.Generator().manual_seed(0))}
    for name, image in no_digit.items():
        p.lib("Predictor", f"predict_proba: {name}", lambda image=image: predictor.predict_proba(image),
              ok=lambda r: False)
    p.lib("Predictor", "predict_proba: [3, 28, 28, 3]", lambda: predictor.predict_proba(torch.rand(3, 28, 28, 3)))
    p.lib("Predictor", "predict_proba: int32 pixels", lambda: predictor.predict_proba(torch.zeros(1, 28, 28,
                                                                                                  dtype=torch.int32)))
    p.lib("Predictor", "predict_proba: NaN pixels", lambda: predictor.predict_proba(torch.full((28, 28), np.nan)))
    p.lib("Predictor", "threads=0", lambda: Predictor(DigitRecognitionCNN(), threads=0))
    p.lib("Predictor", "backend='fastest'", lambda: Predictor(DigitRecognitionCNN(), backend="fastest"))
    broken = DigitRecognitionCNN().eval()
    with torch.no_grad():
        broken.fc2.weight.fill_(float("nan"))
    p.lib("Predictor", "a network with NaN weights", lambda: Predictor(broken, backend="eager").predict(
        torch.rand(2, 28, 28)), ok=lambda r: False)
    p.lib("Predictor", "not a network", lambda: Predictor("net.pt"))


def results_cases(p: Probe) -> None:
    from digitlab import ablation

    good = {"key": "k", "seed": 0, "code": "c", "config": {}, "final": {}, "history": {}}

    def results_file(text: str) -> Path:
        path = p.path("runs.jsonl")
        path.write_text(text)
        return path

    for name, text in [("a line that is not JSON", "{oops\n"), ("a line that is a JSON list", "[1, 2]\n"),
                       ("a line that is a number", "3\n"), ("binary garbage", "\x00\x01\x02\n"),
                       ("a record without its key", json.dumps({k: v for k, v in good.items() if k != "key"}) + "\n")]:
        path = results_file(text)
        p.lib("results files", f"load_records: {name}", lambda path=path: ablation.load_records(path))
    path = results_file(json.dumps(good) + "\n" + json.dumps(good)[:20])
    p.lib("results files", "load_records: a last line cut off by a crash", lambda: ablation.load_records(path),
          ok=lambda r: len(r) == 1)
    path = results_file(json.dumps(good) + "\n")
    p.lib("results files", "save_record: a record without its key", lambda: ablation.save_record({"seed": 1}, path),
          keep=(path,))
    p.lib("results files", "save_record: then read back", lambda: ablation.load_records(path), ok=lambda r: len(r) == 1)
    target = results_file(json.dumps(good) + "\n")
    link = target.parent / "link.jsonl"
    link.symlink_to(target)
    p.lib("results files", "save_record through a link", lambda: ablation.save_record({**good, "seed": 2}, link),
          ok=lambda r: link.is_symlink() and len(ablation.load_records(target)) == 2)
    folder = p.path("runs-folder.jsonl")
    folder.mkdir()
    p.lib("results files", "load_records: a folder", lambda: ablation.load_records(folder))


def cli_cases(p: Probe) -> None:
    tiny = ["--n-train", "64", "--epochs", "1", "--batch-size", "64"]
    out = str(p.path("cli.pt"))

    def train(case, *args, env=None, ok=None):
        p.cli("command line", f"train {case}", ["-m", "digitlab", "train", *tiny, "--out", out, *args], env=env,
              ok=ok)

    train("--lr inf", "--lr", "inf", ok=lambda s: False)
    train("--lr 1e9 (one batch per epoch)", "--lr", "1e9", ok=lambda s: False)
    train("--lr nan", "--lr", "nan", ok=lambda s: False)
    train("--lr -1", "--lr", "-1", ok=lambda s: False)
    train("--epochs 0", "--epochs", "0", ok=lambda s: False)
    train("--batch-size 0", "--batch-size", "0", ok=lambda s: False)
    train("--n-train 5", "--n-train", "5")
    train("--seed -1", "--seed", "-1")
    train("--device meta", "--device", "meta", ok=lambda s: False)
    train("--device cuda (no GPU here)", "--device", "cuda", ok=lambda s: torch.cuda.is_available())
    train("DIGITLAB_PRECISION=fp64", env={"DIGITLAB_PRECISION": "fp64"}, ok=lambda s: False)
    train("--out a folder", "--out", str(p.tmp))
    train("--out a full disk", "--out", str(small_disk(p) / "m.pt"), ok=lambda s: False)
    p.cli("command line", "evaluate a missing checkpoint", ["-m", "digitlab", "evaluate", str(p.path("none.pt"))])
    garbage = p.path("garbage.pt")
    garbage.write_text("garbage")
    p.cli("command line", "evaluate a text file", ["-m", "digitlab", "evaluate", str(garbage)])
    from digitlab.models import DigitRecognitionCNN

    nan = p.path("nan.pt")
    state = DigitRecognitionCNN().state_dict()
    state["fc2.bias"] = torch.full((10,), float("nan"))
    torch.save({"arch": "DigitRecognitionCNN", "config": {}, "state_dict": state, "meta": {}}, nan)
    p.cli("command line", "evaluate a checkpoint with NaN weights", ["-m", "digitlab", "evaluate", str(nan)],
          ok=lambda s: False)
    for value in ("true", "maybe"):
        p.cli("command line", f"DIGITLAB_FAST={value} data", ["-m", "digitlab", "data"], env={"DIGITLAB_FAST": value},
              ok=lambda s, value=value: value == "true")
    p.cli("command line", "data with DIGITLAB_DATA a file", ["-m", "digitlab", "data"],
          env={"DIGITLAB_DATA": str(garbage)})
    p.cli("command line", "an unknown command", ["-m", "digitlab", "fly"])


def tool_cases(p: Probe) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
        metadata={"nbgrader": {"schema_version": 3, "grade_id": "a", "solution": True, "grade": False,
                               "locked": False, "task": False}})])
    student = ["-m", "digitlab.student"]
    for case, out in [("--out the notebook's own folder", lambda f: f),
                      ("--out the same folder, written another way", lambda f: f / ".." / f.name)]:
        source = p.path("course.ipynb")
        nbformat.write(nb, source)
        p.cli("student tool", case, [*student, str(source), "--out", str(out(source.parent))], keep=(source,))
    text = p.path("notes.ipynb")
    text.write_text("my notes")
    p.cli("student tool", "a text file named .ipynb", [*student, str(text), "--out", str(p.path("out"))])
    listing = p.path("list.ipynb")
    listing.write_text("[1, 2]")
    p.cli("student tool", "a JSON list named .ipynb", [*student, str(listing), "--out", str(p.path("out"))])
    p.cli("student tool", "a missing notebook", [*student, str(p.path("missing.ipynb")), "--out", str(p.path("o"))])
    grade = ["-m", "digitlab.assignments", "grade"]
    nowhere = p.path("no-course")
    p.cli("grading tool", "a folder that is no course", [*grade, "training", "--course", str(nowhere.parent)])
    p.cli("grading tool", "--workers 0", [*grade, "training", "--workers", "0", "--course", str(nowhere.parent)])
    p.cli("grading tool", "--shard 0/2", [*grade, "training", "--shard", "0/2", "--course", str(nowhere.parent)])
    p.cli("grading tool", "--shard two", [*grade, "training", "--shard", "two", "--course", str(nowhere.parent)])
    p.cli("grading tool", "merge a folder that is no course", ["-m", "digitlab.assignments", "merge", "--course",
                                                                str(nowhere.parent)])


OUTCOMES = ("refused", "handled", "silent", "cryptic", "lost", "hang")


def counts(rows) -> str:
    return ", ".join(f"{sum(r[2] == k for r in rows)} {k}" for k in OUTCOMES)


def report(rows: list[tuple[str, str, str, str]], seconds: float, before: dict | None) -> str:
    """The table; with `before` (an earlier run's JSON), each case's outcome then too."""
    from digitlab.measure import machine

    info = machine()
    lines = ["# Bad input probe", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, {info['cpu_capability']}; Python {info['python']}, "
             f"torch {info['torch']}. Written by `python benchmarks/bad_input_probe.py` in {seconds:.0f} s "
             "(run as root: one case mounts a 64 KB file system).", "",
             f"Now: {len(rows)} cases, {counts(rows)}."]
    old = {}
    if before:
        old = {(a, c): o for a, c, o, _ in before["rows"]}
        lines += ["", f"Before (commit {before['commit']}, the same probe): {counts(before['rows'])}; a case that "
                  "code of that commit did not have is marked -."]
    lines += ["", "| # | area | case |" + (" before |" if before else "") + " now | what it said now |",
              "|---:|---|---|" + ("---|" if before else "") + "---|---|"]
    lines += [f"| {i} | {area} | {case} |" + (f" {old.get((area, case), '-')} |" if before else "")
              + f" {outcome} | {said} |" for i, (area, case, outcome, said) in enumerate(rows, 1)]
    return "\n".join(lines) + "\n"


DATA = os.environ.get("DIGITLAB_DATA", "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "BAD_INPUT.md",
                        help="the table; the rows go to the same name with .json too")
    parser.add_argument("--before", type=Path, help="the .json of an earlier run, shown beside this one")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.simplefilter("ignore")
    from digitlab.checkpoints import course_model
    from digitlab.infer import Predictor

    start = time.perf_counter()
    predictor = Predictor(course_model()[0], backend="eager")
    with tempfile.TemporaryDirectory() as tmp:
        p = Probe(Path(tmp))
        for cases in (mnist_cases, checkpoint_cases, config_cases, training_cases, results_cases, tool_cases,
                      cli_cases):
            cases(p)
        picture_cases(p, predictor)
        predictor_cases(p, predictor)
        for folder in MOUNTS:
            subprocess.run(["umount", str(folder)], check=False)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    args.out.with_suffix(".json").write_text(json.dumps({"commit": commit.stdout.strip(), "rows": p.rows}, indent=1))
    before = json.loads(args.before.read_text()) if args.before else None
    args.out.write_text(report(p.rows, time.perf_counter() - start, before))
    print(f"{len(p.rows)} cases: {counts(p.rows)}")


if __name__ == "__main__":
    main()
