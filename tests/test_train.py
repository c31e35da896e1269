import math

import numpy as np
import pytest
import torch

from digitlab import train
from digitlab.config import SCHEDULES
from digitlab.models import DigitRecognitionCNN
from digitlab.train import evaluate, fit, get_device, lr_schedule, predict, predict_proba, set_seed


def test_get_device():
    assert get_device("cpu").type == "cpu"
    assert get_device().type in {"cpu", "cuda", "mps"}
    for name in ("meta", "bogus"):
        with pytest.raises(ValueError, match=f"{name!r} cannot train|unknown device {name!r}"):
            get_device(name)


def test_short_training_run_learns(small_splits):
    set_seed(0)
    net = DigitRecognitionCNN()
    history = fit(net, small_splits["train"], small_splits["val"], num_epochs=2, batch_size=64,
                  lr=2e-3, progress=False)
    assert history["epoch"] == [1, 2]
    assert all(len(v) == 2 for k, v in history.items() if k != "run")
    assert history["train_loss"][1] < history["train_loss"][0]
    # 2,000 images, 2 epochs: a working CNN gets well past 90% on the validation set; chance is 10%.
    assert history["val_acc"][-1] > 0.90
    _, acc = evaluate(net, *small_splits["val"])
    assert acc == pytest.approx(history["val_acc"][-1])


def test_label_smoothing_caps_the_networks_confidence(small_splits):
    X, y = small_splits["train"][0][:1024], small_splits["train"][1][:1024]
    confidence = {}
    for smoothing in (0.0, 0.3):
        set_seed(0)
        net = DigitRecognitionCNN()
        fit(net, (X, y), num_epochs=3, batch_size=64, lr=3e-3, label_smoothing=smoothing, progress=False)
        confidence[smoothing] = torch.softmax(train.batched_logits(net, X), 1).max(1).values.mean().item()
    # Smoothing 0.3 makes the best target probability 0.7 + 0.03; the plain loss pushes it towards 1.
    assert confidence[0.3] < 0.8 < 0.9 < confidence[0.0], confidence


def test_same_seed_same_numbers(small_splits):
    X, y = small_splits["train"][0][:512], small_splits["train"][1][:512]
    runs = []
    for _ in range(2):
        set_seed(1)
        net = DigitRecognitionCNN()
        runs.append(fit(net, (X, y), num_epochs=1, batch_size=64, progress=False)["train_loss"])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("schedule", ["none", "step", "onecycle", "plateau"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_schedules_and_optimizers_run(small_splits, schedule, optimizer):
    X, y = small_splits["train"][0][:256], small_splits["train"][1][:256]
    history = fit(DigitRecognitionCNN(), (X, y), (X, y), num_epochs=3, batch_size=64, lr=0.01,
                  optimizer=optimizer, schedule=schedule, progress=False)
    assert len(history["lr"]) == 3
    if schedule == "none":
        assert history["lr"] == [0.01] * 3
    if schedule == "step":
        assert history["lr"] == pytest.approx([0.001, 0.0001, 0.00001])


def test_bad_option_names():
    with pytest.raises(ValueError, match="optimizer must be"):
        train.make_optimizer("adamax", DigitRecognitionCNN().parameters(), 0.1)
    with pytest.raises(ValueError, match="schedule must be"):
        train.make_scheduler("cosine", torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), 1, 1)


def test_images_that_are_not_finite_are_refused_up_front(small_splits):
    X, y = small_splits["train"][0][:256].clone(), small_splits["train"][1][:256]
    X[3, 0, 5, 5], X[7, 0, 0, 0] = float("nan"), float("inf")
    with pytest.raises(ValueError, match="the training set: 2 of 256 images hold NaN or infinite pixels"):
        fit(DigitRecognitionCNN(), (X, y), num_epochs=1, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="evaluate: 2 of 256 images hold NaN or infinite pixels"):
        evaluate(DigitRecognitionCNN(), X, y)


def test_weights_that_explode_in_the_last_step_stop_training(small_splits):
    # one batch per epoch: the training loss, measured before each step, never shows it; the validation loss does
    X, y = small_splits["train"][0][:64], small_splits["train"][1][:64]
    with pytest.raises(FloatingPointError, match="the validation loss is .* weights exploded"):
        fit(DigitRecognitionCNN(), (X, y), small_splits["val"], num_epochs=1, batch_size=64, lr=1e9, progress=False)


def test_interrupt_returns_history_so_far(small_splits, monkeypatch):
    X, y = small_splits["train"][0][:128], small_splits["train"][1][:128]
    calls = {"n": 0}
    real = train.evaluate

    def interrupt_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", interrupt_in_second_epoch)
    history = fit(DigitRecognitionCNN(), (X, y), (X, y), num_epochs=5, batch_size=64, progress=False)
    assert history["epoch"] == [1]


def test_predict_accepts_raw_images_and_checks_them():
    set_seed(0)
    net = DigitRecognitionCNN().eval()
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    probs = predict_proba(net, images)
    assert probs.shape == (3, 10) and torch.allclose(probs.sum(1), torch.ones(3))
    assert torch.allclose(predict_proba(net, images.float() / 255), probs, atol=1e-6)
    assert torch.allclose(predict_proba(net, images.numpy()[:, None]), probs, atol=1e-6)
    assert predict(net, images[0]).shape == (1,)
    assert torch.equal(predict(net, images), probs.argmax(1))


@pytest.mark.parametrize(("images", "error", "message"), [
    (torch.zeros(3, 32, 32), ValueError, r"28x28.*\[3, 32, 32\].*to_mnist"),
    (torch.full((28, 28), -0.42), ValueError, "normalised"),
    (torch.full((28, 28), float("nan")), ValueError, "NaN"),
    (torch.zeros(28, 28, dtype=torch.int32), TypeError, "uint8"),
    ([[0] * 28] * 28, TypeError, "list"),
    (np.zeros((0, 28, 28), dtype=np.uint8), ValueError, "28x28"),
])
def test_predict_refuses_what_is_not_a_raw_28x28_image(images, error, message):
    with pytest.raises(error, match=message):
        predict(DigitRecognitionCNN().eval(), images)


def test_history_values_are_plain_numbers(small_splits):
    X, y = small_splits["train"][0][:64], small_splits["train"][1][:64]
    history = fit(DigitRecognitionCNN(), (X, y), num_epochs=1, progress=False)
    assert math.isnan(history["val_loss"][0])  # no validation set given
    assert all(isinstance(v, (int, float)) for k, values in history.items() if k != "run" for v in values)


def test_fast_path_gives_the_same_network_in_either_memory_layout(small_splits):
    X, y = small_splits["train"][0][:256], small_splits["train"][1][:256]
    set_seed(0)
    net = DigitRecognitionCNN()
    fit(net, (X, y), num_epochs=1, batch_size=64, progress=False)
    assert net.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    plain = DigitRecognitionCNN().eval()
    plain.load_state_dict(net.state_dict())  # a checkpoint of it loads into a default (NCHW) network
    with torch.inference_mode():
        torch.testing.assert_close(plain(X[:32]), net(X[:32]), rtol=1e-4, atol=1e-4)
    assert evaluate(plain, X, y) == pytest.approx(evaluate(net, X, y), rel=1e-5)


@pytest.mark.parametrize("has_bf16_units, env, expected", [
    (False, None, "fp32"), (True, None, "bf16"),          # auto: the CPU decides
    (True, "fp32", "fp32"), (False, "bf16", "bf16"),      # DIGITLAB_PRECISION overrides auto for a whole run
    (True, "AUTO", "bf16"), (False, " ", "fp32")])
def test_choose_precision_auto(monkeypatch, has_bf16_units, env, expected):
    monkeypatch.setattr(train, "bf16_supported", lambda: has_bf16_units)
    if env is None:
        monkeypatch.delenv("DIGITLAB_PRECISION", raising=False)
    else:
        monkeypatch.setenv("DIGITLAB_PRECISION", env)
    assert train.choose_precision("auto", "cpu") == expected


def test_choose_precision_explicit_wins_and_bad_names_are_refused(monkeypatch):
    monkeypatch.setenv("DIGITLAB_PRECISION", "bf16")
    assert train.choose_precision("fp32") == "fp32"
    monkeypatch.delenv("DIGITLAB_PRECISION")
    monkeypatch.setattr(train, "bf16_supported", lambda: True)
    assert train.choose_precision("auto", "cuda") == "fp32"  # auto keeps float32 off the CPU
    with pytest.raises(ValueError, match="precision must be"):
        train.choose_precision("fp16")
    monkeypatch.setenv("DIGITLAB_PRECISION", "half")
    with pytest.raises(ValueError, match="DIGITLAB_PRECISION"):
        train.choose_precision()


def test_both_cpu_precision_paths_train_and_are_recorded(small_splits, monkeypatch):
    """Forces each path, so a developer on either kind of CPU exercises both (bf16 is emulated without bf16 units)."""
    monkeypatch.delenv("DIGITLAB_PRECISION", raising=False)
    X, y = small_splits["train"][0][:512], small_splits["train"][1][:512]
    histories, nets = {}, {}
    for precision in ("fp32", "bf16"):
        set_seed(0)
        nets[precision] = DigitRecognitionCNN()
        histories[precision] = fit(nets[precision], (X, y), (X[:256], y[:256]), num_epochs=2, batch_size=64,
                                   lr=2e-3, precision=precision, device="cpu", progress=False)
    for precision, history in histories.items():
        run = history["run"]
        assert run["precision"] == precision and run["device"] == "cpu"
        assert run["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and run["torch"] == torch.__version__
        assert all(math.isfinite(v) for v in history["train_loss"])
        assert history["train_loss"][1] < history["train_loss"][0]
    fp32, bf16 = (histories[p]["train_loss"] for p in ("fp32", "bf16"))
    assert fp32 != bf16  # bfloat16 autocast really ran: rounding changes the losses ...
    assert bf16 == pytest.approx(fp32, abs=0.05)  # ... but only a little after 16 steps
    # the weights themselves stay float32 in both paths
    assert all(p.dtype == torch.float32 for p in nets["bf16"].parameters())


@pytest.mark.parametrize(("n", "settings", "message"), [
    (256, {"optimizer": "sgd", "lr": 1.0}, "times the first batch's"),            # the loss explodes, stays finite
    (1000, {"optimizer": "sgd", "lr": 1.0, "num_epochs": 2}, "no better than guessing"),  # dead at chance
])
def test_divergence_without_nan_stops_with_a_clear_error(small_splits, n, settings, message):
    X, y = small_splits["test"][0][:n], small_splits["test"][1][:n]
    set_seed(0)
    net = DigitRecognitionCNN(batch_norm=n < 1000, dropout1=0.0, dropout2=0.0)
    with pytest.raises(FloatingPointError, match=f"{message}.*Lower the learning rate"):
        fit(net, (X, y), **{"num_epochs": 1, "batch_size": 64, "schedule": "none", **settings}, progress=False)


@pytest.mark.parametrize(("settings", "message"), [
    ({"num_epochs": 0}, "num_epochs must be"), ({"num_epochs": -1}, "num_epochs must be"),
    ({"batch_size": 0}, "batch_size must be"), ({"batch_size": -5}, "batch_size must be"),
    ({"lr": 0.0}, "lr must be"), ({"lr": float("inf")}, "lr must be a positive, finite number"),
    ({"lr": "0.1"}, "lr must be a number, not '0.1'"), ({"optimizer": "adamax"}, "optimizer must be"),
    ({"n_train": 100}, "'n_train' is not a setting of fit: fit trains the network and images it is given"),
    ({"dropout1": 0.1}, "'dropout1' is not a setting of fit"), ({"width": 3}, "'width' is not a setting of a run"),
    ({"device": "meta"}, "device 'meta' cannot train"), ({"precision": "fp16"}, "precision must be 'auto'"),
    ({"schedule": "cosine"}, "schedule must be 'none', 'step', 'onecycle' or 'plateau'"),
    ({"label_smoothing": 1.0}, "label_smoothing must be a share from 0 to below 1"),
])
def test_bad_settings_are_refused_before_anything_runs(settings, message, monkeypatch):
    monkeypatch.setattr(train, "get_device", lambda *a: pytest.fail("fit went past its checks"))
    X, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with pytest.raises(ValueError, match=message):
        fit(DigitRecognitionCNN(), (X, y), progress=False, **settings)


RAW = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
LABELS = torch.randint(0, 10, (8,))


@pytest.mark.parametrize(("X", "y", "error", "message"), [
    (RAW, LABELS, ValueError, r"shaped \[N, 1, 28, 28\].*digitlab.normalize"),
    (RAW[:, None], LABELS, TypeError, "torch.uint8 pixels.*digitlab.normalize"),
    (RAW[:, None].float() / 255, LABELS, ValueError, "raw pixels.*digitlab.normalize"),
    (RAW[:, None].float(), LABELS, ValueError, "raw pixels.*digitlab.normalize"),
    (torch.randn(8, 1, 28, 28), LABELS + 1, ValueError, "digits 0-9"),
    (torch.randn(8, 1, 28, 28), LABELS.float(), TypeError, "int64"),
    (torch.randn(8, 1, 28, 28), LABELS[:5], ValueError, "8 images need 8 labels"),
    (torch.randn(0, 1, 28, 28), LABELS[:0], ValueError, "no images"),
])
def test_fit_and_evaluate_refuse_what_is_not_normalised_mnist(X, y, error, message):
    if message == "digits 0-9":
        y = y.clone()
        y[0] = 10
    with pytest.raises(error, match=message):
        fit(DigitRecognitionCNN(), (X, y), progress=False)
    with pytest.raises(error, match=message):
        evaluate(DigitRecognitionCNN(), X, y)


def test_predict_with_batch_size_zero_is_a_clear_error():
    with pytest.raises(ValueError, match="batch_size must be"):
        predict(DigitRecognitionCNN(), torch.zeros(2, 28, 28), batch_size=0)


def test_each_schedule_is_stepped_as_the_registry_says():
    from digitlab.__main__ import parse

    for name, when in SCHEDULES.items():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        scheduler = train.make_scheduler(name, opt, num_epochs=3, steps_per_epoch=4)
        assert (scheduler is None) == (when is None), name
        X, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
        history = fit(DigitRecognitionCNN(), (X, y), (X, y), num_epochs=3, batch_size=4, lr=1e-3, schedule=name,
                      progress=False)
        lrs = history["lr"]
        if when is None:
            assert lrs == [1e-3] * 3
        elif when == "epoch":  # StepLR: x0.1 after every epoch (a third of 3 epochs)
            assert lrs == pytest.approx([1e-4, 1e-5, 1e-6])
        elif when == "batch":  # one-cycle starts at a 25th of the peak: near it after 4 of 12 steps, then low
            assert 0.5e-3 < lrs[0] < 1e-3 and lrs[-1] < lrs[0] / 10
        else:  # plateau: stepped with the validation loss, at most halved per epoch
            assert all(b in (a, a / 2) for a, b in zip([1e-3, *lrs[:-1]], lrs, strict=True))
    assert all(parse(["train", "--schedule", name]).schedule == name for name in SCHEDULES)  # the CLI's list


def test_lr_schedule_matches_fit():
    lrs = lr_schedule("onecycle", 0.01, num_epochs=2, steps_per_epoch=50)
    assert len(lrs) == 100
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(0.01)
    assert 20 <= peak <= 40  # OneCycle warms up for 30% of the steps
    assert lrs[0] < 0.001 and lrs[-1] < 1e-5
    assert lr_schedule("step", 0.1, num_epochs=3, steps_per_epoch=2) == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert lr_schedule("none", 0.1, 1, 3) == [0.1] * 3
    with pytest.raises(ValueError, match="validation loss"):
        lr_schedule("plateau", 0.1, 1, 3)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70, 1.5, True])
def test_a_seed_numpy_and_torch_cannot_take_is_refused(small_splits, seed):
    with pytest.raises(ValueError, match="a seed must be a whole number from 0 to 4294967295"):
        set_seed(seed)
    X, y = small_splits["train"][0][:64], small_splits["train"][1][:64]
    with pytest.raises(ValueError, match="a seed must be"):
        fit(DigitRecognitionCNN(), (X, y), num_epochs=1, seed=seed, progress=False)


def test_fit_refuses_a_weight_decay_that_is_not_finite(small_splits):
    X, y = small_splits["train"][0][:64], small_splits["train"][1][:64]
    with pytest.raises(ValueError, match="weight_decay must be a finite number, 0 or more, not nan"):
        fit(DigitRecognitionCNN(), (X, y), num_epochs=1, weight_decay=float("nan"), progress=False)


def test_weights_that_explode_without_a_validation_set_stop_training(small_splits):
    # one batch, no validation set: no loss is ever measured after the step that blows the weights up
    X, y = small_splits["train"][0][:64], small_splits["train"][1][:64]
    with pytest.raises(FloatingPointError, match="the largest weight is .* the weights exploded"):
        fit(DigitRecognitionCNN(), (X, y), num_epochs=1, batch_size=64, lr=1e9, progress=False)
