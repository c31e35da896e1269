import pytest
import torch
import torch.nn.functional as F

from digitlab import infer
from digitlab.checkpoints import save
from digitlab.data import load_mnist, normalize
from digitlab.infer import (
    Predictor,
    export_onnx,
    export_torchscript,
    fold_batchnorm,
    load_exported,
    make_runner,
    onnx_available,
    onnx_runner,
)
from digitlab.models import DigitRecognitionCNN
from digitlab.train import predict

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="the optional onnx extra is not installed")


def test_folding_batchnorm_keeps_the_outputs():
    torch.manual_seed(0)
    net = DigitRecognitionCNN().eval()
    for bn in (net.bn1, net.bn2):  # running statistics far from the initial 0 / 1
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
    folded = fold_batchnorm(net)
    assert isinstance(folded.bn1, torch.nn.Identity) and isinstance(net.bn1, torch.nn.BatchNorm2d)
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-4)
    no_bn = DigitRecognitionCNN(batch_norm=False).eval()
    with torch.no_grad():
        assert torch.allclose(fold_batchnorm(no_bn)(x), no_bn(x))


@pytest.mark.parametrize("backend", ["fused", "torchscript", "int8-dynamic", "int8-static",
                                  pytest.param("onnxruntime", marks=needs_onnx),
                                  pytest.param("onnxruntime-int8", marks=needs_onnx)])
def test_every_backend_agrees_with_eager(fast_net, test_images, backend):
    X = normalize(test_images[0])
    calibration = normalize(load_mnist("train")[0][:500])
    reference = make_runner(fast_net, "eager")(X)
    logits = make_runner(fast_net, backend, threads=2, calibration=calibration)(X)
    assert logits.shape == (500, 10)
    agree = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
    if backend.endswith("int8") or backend.startswith("int8"):
        # int8 rounding flips borderline images; the briefly trained fast-mode model has many (1.8% seen
        # for onnxruntime-int8); a broken quantisation agrees on about 10%.
        assert agree >= 0.97
    else:
        assert agree == 1.0 and torch.allclose(logits, reference, atol=1e-3)


def test_predictor_single_images_and_batches(fast_net, test_images):
    X, _ = test_images
    predictor = Predictor(fast_net)
    assert predictor.backend == ("onnxruntime" if onnx_available() else "fused")
    assert torch.equal(predictor.predict(X), predict(fast_net, X))
    one = predictor.predict_proba(X[0])
    assert one.shape == (1, 10) and torch.allclose(one.sum(), torch.tensor(1.0))
    assert torch.allclose(predictor.predict_proba(X[:1].float() / 255), one, atol=1e-5)
    with pytest.raises(ValueError, match="to_mnist"):
        predictor.predict(torch.zeros(32, 32))
    with pytest.raises(ValueError, match="calibration"):
        Predictor(fast_net, backend="int8-static")
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor(fast_net, backend="tensorrt")
    torch_threads = torch.get_num_threads()
    Predictor(fast_net, backend="fused", threads=1).predict(X[:4])
    assert torch.get_num_threads() == torch_threads  # the thread setting is restored


def test_torchscript_export_round_trip(fast_net, test_images, tmp_path):
    X = normalize(test_images[0][:64])
    path = export_torchscript(fast_net, tmp_path / "out" / "model.pt")
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind
    with torch.no_grad():
        assert torch.allclose(load_exported(path)(X), fast_net.eval()(X), atol=1e-4)
    with pytest.raises(FileNotFoundError, match="export_torchscript"):
        load_exported(tmp_path / "nothing.pt")


@needs_onnx
def test_onnx_export_round_trip(fast_net, test_images, tmp_path):
    X = normalize(test_images[0][:64])
    path = export_onnx(fast_net, tmp_path / "model.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with torch.no_grad():
        assert torch.allclose(onnx_runner(path, threads=2)(X), fast_net.eval()(X), atol=1e-4)
        assert torch.allclose(load_exported(path)(X), fast_net.eval()(X), atol=1e-4)


@pytest.mark.parametrize(("flags", "int8_accuracy", "given", "chosen"), [
    ({"avx2"}, 0.98, True, "onnxruntime"),                          # no int8 dot products: float32
    ({"avx2", "avx512_vnni"}, 0.9795, True, "onnxruntime-int8"),    # VNNI, 0.05 points lost: int8
    ({"avx2", "avx_vnni"}, 0.975, True, "onnxruntime"),             # VNNI, but 0.5 points lost: float32
    ({"avx2", "avx512_vnni"}, 0.98, False, "onnxruntime"),          # no calibration and check set: float32
])
def test_auto_backend_takes_int8_only_where_the_cpu_makes_it_fast_and_it_stays_accurate(
        fast_net, monkeypatch, flags, int8_accuracy, given, chosen):
    pytest.importorskip("onnxruntime")
    y = torch.arange(10_000) % 10

    def runner(fast_net, backend, threads=1, calibration=None):  # predictions right on the given share of the images
        share = 0.98 if backend == "eager" else int8_accuracy
        return lambda X: F.one_hot((y + (torch.arange(len(y)) >= share * len(y))) % 10, 10).float()

    monkeypatch.setattr(infer, "cpu_flags", lambda: flags)
    monkeypatch.setattr(infer, "make_runner", runner)
    X = torch.zeros(len(y), 1, 28, 28)
    extra = {"calibration": X[:10], "check": (X, y)} if given else {}
    assert infer.choose_backend(fast_net, **extra) == chosen
    assert Predictor(fast_net, **extra).backend == chosen
    monkeypatch.setattr(infer, "onnx_available", lambda: False)
    assert infer.choose_backend(fast_net, **extra) == "fused"


RAW = torch.randint(0, 256, (16, 28, 28), dtype=torch.uint8)


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda net, tmp: Predictor(str(tmp / "model.pt")), TypeError, "not the path.*digitlab.load"),
    (lambda net, tmp: Predictor(tmp / "model.pt"), TypeError, "not the path.*digitlab.load"),
    (lambda net, tmp: Predictor(net.state_dict()), TypeError, "not a state_dict"),
    (lambda net, tmp: Predictor(net, threads=0), ValueError, "threads must be"),
    (lambda net, tmp: Predictor(net, "int8-static", calibration=RAW), ValueError, r"\[N, 1, 28, 28\]"),
    (lambda net, tmp: Predictor(net, "int8-static", calibration=RAW[:, None]), TypeError, "digitlab.normalize"),
    (lambda net, tmp: Predictor(net, "int8-static", calibration=RAW[:, None] / 255), ValueError, "raw pixels"),
    (lambda net, tmp: infer.quantize_static_int8(net, RAW[:, None] * 1.0), ValueError, "raw pixels"),
    (lambda net, tmp: load_exported(tmp / "checkpoint.pt"), ValueError, "not a TorchScript file.*digitlab.load"),
])
def test_wrong_arguments_are_clear_errors(tmp_path, make, error, message):
    net = DigitRecognitionCNN().eval()
    save(net, tmp_path / "checkpoint.pt")
    with pytest.raises(error, match=message):
        make(net, tmp_path)


@needs_onnx
def test_onnx_predictions_leave_pytorchs_threads_alone(fast_net, test_images, monkeypatch):
    """ONNX Runtime has its own threads; changing PyTorch's on every call cost 8 ms a digit in torch 2.5."""
    predictor = Predictor(fast_net, backend="onnxruntime")

    def refuse(n):
        raise AssertionError("torch.set_num_threads was called")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    assert predictor.predict(test_images[0][:2]).shape == (2,)


def test_images_without_a_digit_are_refused_and_every_mnist_digit_passes():
    from digitlab.errors import NoDigitError

    predictor = Predictor(DigitRecognitionCNN(), backend="eager")
    cases = [(torch.zeros(28, 28), "image 0 holds no digit \\(blank\\)"),
             (torch.ones(2, 28, 28), "image 0, 1 holds no digit \\(inked over more than 60%"),
             (torch.rand(28, 28, generator=torch.Generator().manual_seed(0)), "inked over"),
             (255 - load_mnist("test")[0][:1], "inked over")]   # black on white: the colours the other way round
    for images, message in cases:
        with pytest.raises(NoDigitError, match=message):
            predictor.predict_proba(images)
    for split in ("train", "test"):
        infer.check_digits(load_mnist(split)[0].float() / 255)


def test_a_network_whose_weights_are_not_finite_is_refused():
    net = DigitRecognitionCNN()
    with torch.no_grad():
        net.fc2.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="weights are not finite numbers .* fc2.weight"):
        Predictor(net, backend="eager")
