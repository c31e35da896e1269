import dataclasses
import os
import subprocess

import pytest
import torch

from digitlab import checkpoints
from digitlab.checkpoints import load, load_or_train, save
from digitlab.config import RECIPE, RunConfig
from digitlab.errors import TrainingInterrupted
from digitlab.models import DigitRecognitionCNN
from digitlab.settings import PROJECT_DIR


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = DigitRecognitionCNN(dropout1=0.1).eval()
    path = save(net, tmp_path / "sub" / "net.pt", history={"val_acc": [0.5]}, note="x")
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]  # no temporary file left behind
    loaded, meta = load(path)
    assert meta == {"history": {"val_acc": [0.5]}, "note": "x"}
    assert loaded.config == net.config and not loaded.training
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded(x), net(x))


def test_bare_state_dict_of_the_paper_loads(tmp_path):
    net = DigitRecognitionCNN()
    torch.save(net.state_dict(), tmp_path / "paper.pt")
    loaded, _ = load(tmp_path / "paper.pt")
    assert torch.equal(loaded.fc1.weight, net.fc1.weight)


TINY = RunConfig(n_train=64, num_epochs=1)


def test_load_or_train_caches_by_config_and_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "mnist_splits", lambda n_train=None: small_fake_splits())
    net, history = load_or_train("tiny", TINY, models_dir=tmp_path, progress=False)
    path = checkpoints.checkpoint_path("tiny", TINY, 0, tmp_path)
    assert list(tmp_path.iterdir()) == [path] and TINY.key() in path.name
    assert load(path)[1]["config"] == dict(TINY) and load(path)[1]["seed"] == 0

    def no_training(*args, **kwargs):
        raise AssertionError("should have loaded the cached checkpoint")

    monkeypatch.setattr(checkpoints, "fit", no_training)
    again, history_again = load_or_train("tiny", TINY, models_dir=tmp_path)
    assert history_again == history
    assert torch.equal(again.fc2.weight, net.fc2.weight)
    for other, seed in [(RunConfig(n_train=64, num_epochs=2), 0), (TINY, 1)]:  # another config or seed: trained
        with pytest.raises(AssertionError, match="cached"):
            load_or_train("tiny", other, seed=seed, models_dir=tmp_path)


def test_load_or_train_trains_on_the_typed_digits_too(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "mnist_splits", lambda n_train=None: small_fake_splits())
    sizes = []
    real_fit = checkpoints.fit
    monkeypatch.setattr(checkpoints, "fit", lambda net, data, *args, **kwargs: sizes.append(len(data[1]))
                        or real_fit(net, data, *args, **kwargs))
    for typed in (0, 12):
        load_or_train("tiny", RunConfig(n_train=64, num_epochs=1, typed_digits=typed), models_dir=tmp_path,
                      progress=False)
    assert sizes == [64, 76] and len(list(tmp_path.glob("tiny-*.pt"))) == 2


def small_fake_splits():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    return {"train": (X, y), "val": (X[:16], y[:16]), "test": (X[:16], y[:16])}


class Payload:
    """Stands for a pickled object in a foreign or malicious checkpoint."""


@pytest.mark.parametrize(("content", "error", "message"), [
    (None, FileNotFoundError, "No checkpoint at .*python -m digitlab train"),
    (b"", ValueError, "is empty"),
    (b"garbage", ValueError, "not a readable PyTorch checkpoint"),
    ({"arch": "ResNet", "state_dict": {}}, ValueError, "does not know"),
    ({"arch": "DigitRecognitionCNN", "config": {}, "state_dict": torch.nn.Linear(3, 2).state_dict()}, ValueError,
     "different architecture"),
    # a network saved without batch norm cannot be read back as one with it
    ({"arch": "DigitRecognitionCNN", "config": {}, "state_dict": DigitRecognitionCNN(batch_norm=False).state_dict()},
     ValueError, "different architecture"),
    ({"arch": "DigitRecognitionCNN", "config": {"width": 2}, "state_dict": {}}, ValueError, "options.*width"),
    ({"arch": "DigitRecognitionCNN", "config": {}, "state_dict": {}, "meta": Payload()}, ValueError,
     "not a digitlab checkpoint"),
    ({"arch": "DigitRecognitionCNN", "config": {}, "state_dict": torch.zeros(3)}, ValueError, "weights or its record"),
    ({"arch": "DigitRecognitionCNN", "config": {"dropout1": 2.0}, "state_dict": {}}, ValueError, "impossible"),
    ({"arch": "DigitRecognitionCNN", "config": [1], "state_dict": {}}, ValueError, "options are a list"),
    ({"arch": "DigitRecognitionCNN", "config": {},
      "state_dict": {k: v.to("meta") for k, v in DigitRecognitionCNN().state_dict().items()}}, ValueError,
     "holds no weights: its tensors are on PyTorch's 'meta' device"),
    ({"arch": "DigitRecognitionCNN", "config": {}, "state_dict": DigitRecognitionCNN().state_dict(), "meta": [1]},
     ValueError, "weights or its record"),
    ({"arch": "DigitRecognitionCNN", "config": {},
      "state_dict": {**DigitRecognitionCNN().state_dict(), "fc2.bias": torch.full((10,), float("nan"))}},
     ValueError, "not finite numbers .* fc2.bias.* diverged"),
])
def test_bad_checkpoints_are_clear_errors_without_unsafe_advice(tmp_path, content, error, message):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(error, match=message) as err:
        load(path)
    assert "weights_only" not in str(err.value)


def test_unreadable_checkpoint_says_permission_denied(tmp_path, monkeypatch):
    path = save(DigitRecognitionCNN(), tmp_path / "x.pt")
    monkeypatch.setattr(checkpoints.torch, "load", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
    with pytest.raises(ValueError, match="permission denied") as err:
        load(path)
    assert "Delete" not in str(err.value)



def test_the_course_network_is_committed_for_the_current_recipe():
    """Every learner reads the network the chapters describe: the course recipe's checkpoint is in the repository."""
    path = checkpoints.checkpoint_path("course", RECIPE)
    tracked = subprocess.run(["git", "ls-files", "models"], cwd=PROJECT_DIR, capture_output=True, text=True).stdout
    if not tracked and not (PROJECT_DIR / ".git").exists():
        pytest.skip("not a git checkout")
    assert tracked.split() == [str(path.relative_to(PROJECT_DIR))], "commit exactly the course recipe's network"
    net, meta = load(path)
    assert meta["config"] == dict(RECIPE) and meta["seed"] == 0
    assert len(meta["history"]["epoch"]) == RECIPE.num_epochs and meta["history"]["val_acc"][-1] > 0.99


def test_ctrl_c_during_training_is_not_taken_for_a_finished_network(tmp_path, monkeypatch):
    from digitlab import train

    monkeypatch.setattr(checkpoints, "mnist_splits", lambda n_train=None: small_fake_splits())
    calls = []
    real_evaluate = train.evaluate

    def ctrl_c_in_epoch_2(*args, **kwargs):   # Ctrl-C while the second epoch is validated
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", ctrl_c_in_epoch_2)
    with pytest.raises(TrainingInterrupted, match=r"stopped after 1 epoch\(s\); nothing was saved"):
        load_or_train("tiny", dataclasses.replace(TINY, num_epochs=2), models_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_network_whose_weights_are_not_finite_is_not_saved(tmp_path):
    net = DigitRecognitionCNN()
    with torch.no_grad():
        net.conv2.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="cannot save .* not finite numbers .* conv2.weight"):
        save(net, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("meta", [{}, {"history": [1]}, {"history": {"epoch": [1]}},
                                  {"history": {k: [0.5] for k in checkpoints.HISTORY_KEYS}}])
def test_load_or_train_refuses_a_checkpoint_without_a_finished_history(tmp_path, meta):
    config = dataclasses.replace(TINY, num_epochs=2)
    path = checkpoints.checkpoint_path("tiny", config, 0, tmp_path)
    save(DigitRecognitionCNN(), path, **meta)
    with pytest.raises(ValueError, match="does not hold the history of a finished 2-epoch run.*Delete it"):
        load_or_train("tiny", config, models_dir=tmp_path, progress=False)


def test_load_names_a_missing_device_as_such(tmp_path):
    path = save(DigitRecognitionCNN(), tmp_path / "x.pt")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' is not available"):
            load(path, device="cuda")
    with pytest.raises(ValueError, match="device 'gpu0' cannot train or run a network"):
        load(path, device="gpu0")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a small disk needs root")
def test_a_full_disk_is_an_os_error_and_the_old_checkpoint_stays(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        old = disk / "net.pt"
        old.write_bytes(b"the previous checkpoint")
        with pytest.raises(OSError, match="No space left on device"):
            save(DigitRecognitionCNN(), old)
        assert old.read_bytes() == b"the previous checkpoint" and [p.name for p in disk.iterdir()] == ["net.pt"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
def test_training_set_appends_the_typed_digits(monkeypatch):
    g = torch.Generator().manual_seed(0)
    splits = {"train": (torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g))}
    X, y = checkpoints.training_set(RunConfig(n_train=64, typed_digits=12), splits)
    assert X.shape == (76, 1, 28, 28) and y[64:].tolist() == [i % 10 for i in range(12)]
    assert torch.equal(X[:64], splits["train"][0]) and torch.equal(y[:64], splits["train"][1])
    X, y = checkpoints.training_set(RunConfig(n_train=64), splits)
    assert torch.equal(X, splits["train"][0])
    monkeypatch.setattr(checkpoints, "mnist_splits", lambda n_train=None: {"train": (X[:n_train], y[:n_train])})
    assert len(checkpoints.training_set(RunConfig(n_train=10, typed_digits=2))[1]) == 12  # reads MNIST if need be



