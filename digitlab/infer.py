"""Fast CPU inference: optimised copies of a trained network (backends), `Predictor`, export to files.

`python -m digitlab.infer --export DIR` writes TorchScript and ONNX files of the course model;
`digitlab.infer_bench` measures every backend against eager PyTorch.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from digitlab.checkpoints import check_finite
from digitlab.data import as_images, check_normalised, normalize
from digitlab.errors import DigitlabError, MissingFileError, NoDigitError, WrongTypeError, report_user_errors
from digitlab.files import atomic_path
from digitlab.measure import cpu_flags, torch_threads

# The backends: ways to run a network, fastest-to-set-up first. `eager` is the reference every other
# backend is compared with; the onnxruntime backends need the optional `onnx` extra.
BACKENDS = ("eager", "fused", "torchscript", "compile", "int8-dynamic", "int8-static", "onnxruntime",
         "onnxruntime-int8")
ONNX_HINT = "Install the optional ONNX packages: pip install 'digitlab[onnx]' (onnx, onnxruntime)."
# int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX): with them int8 inference outruns float32, without them
# it does not (benchmarks/INFERENCE.md). `Predictor` picks int8 only on such CPUs, and only if it costs at most
# INT8_TOLERANCE of accuracy (a share of the checked images: 0.1 points).
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
INT8_TOLERANCE = 0.001

Runner = Callable[[Tensor], Tensor]  # normalised inputs [N, 1, 28, 28] -> logits [N, 10]


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An eval-mode copy of the paper's network with each BatchNorm folded into the conv before it."""
    net = copy.deepcopy(net).cpu().eval()
    for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
        if isinstance(getattr(net, bn), nn.BatchNorm2d):
            setattr(net, conv, fuse_conv_bn_eval(getattr(net, conv), getattr(net, bn)))
            setattr(net, bn, nn.Identity())
    return net


def _torch_runner(net: nn.Module, memory_format=torch.contiguous_format) -> Runner:
    """Run a torch module without autograd bookkeeping, its input in `memory_format`."""
    def run(X: Tensor) -> Tensor:
        with torch.inference_mode():
            return net(X.contiguous(memory_format=memory_format))
    return run


def to_torchscript(net: nn.Module) -> torch.jit.ScriptModule:
    """BatchNorm folded, scripted, frozen (weights become constants) and optimised for inference."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is in maintenance mode; it still works and is fast
        return torch.jit.optimize_for_inference(torch.jit.script(fold_batchnorm(net)))


def quantize_static_int8(net: nn.Module, calibration: Tensor) -> nn.Module:
    """int8 weights and activations (x86 backend), activation ranges observed on `calibration` inputs."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    _check_calibration(calibration)
    torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantisation is deprecated in favour of torchao; still works
        prepared = prepare_fx(fold_batchnorm(net), get_default_qconfig_mapping(), (calibration[:1],))
        with torch.inference_mode():
            for i in range(0, len(calibration), 256):
                prepared(calibration[i: i + 256])
        return convert_fx(prepared)


def _check_calibration(calibration: Tensor) -> None:
    """Refuse calibration data that is not normalised images [N, 1, 28, 28]: it would set wrong int8 ranges."""
    if not isinstance(calibration, Tensor) or calibration.dim() != 4 or tuple(calibration.shape[1:]) != (1, 28, 28):
        raise DigitlabError(f"calibration must be normalised images shaped [N, 1, 28, 28], e.g. "
                            f"digitlab.normalize(images[:1000]); got {_describe(calibration)}.")
    check_normalised(calibration, "calibration")


def _describe(x) -> str:
    """A tensor's shape and dtype, or another object's type, for error messages."""
    return f"{list(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__


def quantize_dynamic_int8(net: nn.Module) -> nn.Module:
    """int8 weights for the fully connected layers; activations are quantised on the fly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(fold_batchnorm(net), {nn.Linear}, dtype=torch.qint8)


def export_torchscript(net: nn.Module, path: str | Path) -> Path:
    """Write the BatchNorm-folded, frozen TorchScript module to `path` (torch.jit.load reads it, no digitlab needed)."""
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Frozen but not optimize_for_inference'd: its oneDNN-specific graph cannot be saved and loaded.
        torch.jit.save(torch.jit.freeze(torch.jit.script(fold_batchnorm(net))), tmp)
    return path


def load_exported(path: str | Path, threads: int = 1) -> Runner:
    """Run a file written by `export_torchscript` (.pt) or `export_onnx` (.onnx): normalised inputs -> logits."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"No exported model at {path}; write one with export_torchscript or export_onnx.")
    if path.suffix == ".onnx":
        return onnx_runner(path, threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _torch_runner(torch.jit.load(path))
        except RuntimeError:
            raise DigitlabError(f"{path} is not a TorchScript file such as export_torchscript writes; "
                                "a digitlab checkpoint is read with digitlab.load.") from None


def export_onnx(net: nn.Module, path: str | Path) -> Path:
    """Write the network as an ONNX graph (input `image` [N, 1, 28, 28] normalised, output `logits` [N, 10])."""
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fold_batchnorm(net), (torch.zeros(1, 1, 28, 28),), tmp, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
                          dynamo=False)
    return path


def _onnxruntime():
    """The onnxruntime module, or an error that says how to install it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ModuleNotFoundError(f"onnxruntime is not installed. {ONNX_HINT}") from err
    return onnxruntime


def onnx_runner(path: str | Path, threads: int = 1) -> Runner:
    """Run an ONNX file with ONNX Runtime on the CPU: a batch is split across `threads` one-thread sessions.

    Data parallelism across cores beats splitting each layer across threads for a network this
    small: the cores never wait for each other inside a layer.
    """
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = [ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for _ in range(threads)]
    name = sessions[0].get_inputs()[0].name
    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def run_one(session, x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    def run(X: Tensor) -> Tensor:
        x = X.numpy()
        if pool is None or len(x) < 2 * threads:
            return torch.from_numpy(run_one(sessions[0], x))
        chunks = np.array_split(x, threads)
        return torch.from_numpy(np.concatenate(list(pool.map(run_one, sessions, chunks))))
    return run


def quantize_onnx_int8(src: str | Path, dst: str | Path, calibration: Tensor) -> Path:
    """Static int8 quantisation of an ONNX file (per-channel weights), ranges observed on `calibration`."""
    _check_calibration(calibration)
    _onnxruntime()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": calibration[i: i + 256].numpy()} for i in range(0, len(calibration), 256)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        quantize_static(str(prepared), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return Path(dst)


def make_runner(net: nn.Module, backend: str, threads: int = 1, calibration: Tensor | None = None) -> Runner:
    """A function from normalised inputs to logits that runs `net` with `backend` (one of BACKENDS)."""
    _check_net(net, threads)
    if backend == "eager":
        net = copy.deepcopy(net).cpu().eval()

        def run(X: Tensor) -> Tensor:
            with torch.no_grad():
                return net(X)
        return run
    if backend == "fused":
        return _torch_runner(fold_batchnorm(net).to(memory_format=torch.channels_last), torch.channels_last)
    if backend == "torchscript":
        return _torch_runner(to_torchscript(net))
    if backend == "compile":
        return _torch_runner(torch.compile(fold_batchnorm(net)))
    if backend == "int8-dynamic":
        return _torch_runner(quantize_dynamic_int8(net))
    if backend in ("int8-static", "onnxruntime-int8") and calibration is None:
        raise DigitlabError(f"backend {backend!r} needs calibration inputs: pass calibration=X[:1000] "
                         "(normalised training images).")
    if backend == "int8-static":
        return _torch_runner(quantize_static_int8(net, calibration))
    if backend in ("onnxruntime", "onnxruntime-int8"):
        _onnxruntime()
        with tempfile.TemporaryDirectory() as tmp:
            onnx_file = export_onnx(net, Path(tmp) / "net.onnx")
            if backend == "onnxruntime-int8":
                onnx_file = quantize_onnx_int8(onnx_file, Path(tmp) / "net-int8.onnx", calibration)
            return onnx_runner(onnx_file, threads)
    raise DigitlabError(f"backend must be one of {', '.join(BACKENDS)}; not {backend!r}.")


def _check_net(net, threads: int) -> None:
    """Refuse what is not a network (a path, a state_dict) and thread counts below 1."""
    if isinstance(net, str | Path):
        raise WrongTypeError(f"expected a network, not the path {str(net)!r}: load it first, "
                             "net, _ = digitlab.load(path).")
    if isinstance(net, dict):
        raise WrongTypeError("expected a network, not a state_dict: load it into one first, net = "
                             "DigitRecognitionCNN(); net.load_state_dict(state_dict), or use digitlab.load.")
    if not isinstance(net, nn.Module):
        raise WrongTypeError(f"expected a network (torch.nn.Module), not {type(net).__name__}.")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise DigitlabError(f"threads must be a whole number of at least 1, not {threads!r}.")
    check_finite(net.state_dict(), "cannot predict with this network")


def onnx_available() -> bool:
    """Whether the optional onnx and onnxruntime packages are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(net: nn.Module, calibration: Tensor | None = None, check: tuple[Tensor, Tensor] | None = None,
                threads: int = 1) -> str:
    """The fastest correct backend on this CPU: ONNX Runtime in int8 where the CPU has INT8_FLAGS and int8 keeps the
    network's accuracy on `check` (normalised X, y) within INT8_TOLERANCE, ONNX Runtime in float32 otherwise,
    and the fused PyTorch network where ONNX Runtime is not installed."""
    return _choose(net, calibration, check, threads)[0]


def _choose(net: nn.Module, calibration: Tensor | None, check: tuple[Tensor, Tensor] | None,
            threads: int) -> tuple[str, Runner | None]:
    """`choose_backend`'s backend, with the int8 runner it built to check the accuracy when int8 is the choice."""
    if not onnx_available():
        return "fused", None
    if calibration is None or check is None or not INT8_FLAGS & cpu_flags():
        return "onnxruntime", None
    X, y = check
    int8 = make_runner(net, "onnxruntime-int8", threads, calibration)
    accuracy = [(run(X).argmax(1) == y).float().mean().item() for run in (make_runner(net, "eager"), int8)]
    return ("onnxruntime-int8", int8) if accuracy[0] - accuracy[1] <= INT8_TOLERANCE else ("onnxruntime", None)


# An MNIST-style image holds a digit if its ink (pixels above INK) is somewhere and covers at most MAX_INK of the
# frame: MNIST's 70,000 digits cover at most 0.44 of theirs.
INK, MAX_INK = 0.25, 0.6


def check_digits(X: Tensor) -> None:
    """Refuse MNIST-style images [N, 28, 28] (pixels 0-1) that hold no digit: blank, or ink over most of them."""
    ink = X > INK
    blank = ~ink.flatten(1).any(1)
    covered = ink.flatten(1).float().mean(1) > MAX_INK
    for bad, what in [(blank, "blank"), (covered, f"inked over more than {MAX_INK:.0%} of the frame")]:
        if bad.any():
            which = ", ".join(map(str, bad.nonzero().flatten()[:5].tolist()))
            raise NoDigitError(f"image {which} holds no digit ({what}). The network reads MNIST-style images: one "
                               "bright digit on a black background; digitlab.preprocess.to_mnist makes them from "
                               "pictures.")


class Predictor:
    """Digit predictions for raw 28x28 images, one or a batch, from an optimised copy of a network.

    `backend="auto"` picks the fastest correct backend for this CPU (`choose_backend`: int8 needs `calibration`
    images and a labelled `check` set); see BACKENDS and `digitlab.infer_bench` for the others.
    """

    def __init__(self, net: nn.Module, backend: str = "auto", threads: int = 1, calibration: Tensor | None = None,
                 check: tuple[Tensor, Tensor] | None = None):
        self.backend, run = _choose(net, calibration, check, threads) if backend == "auto" else (backend, None)
        self.threads = threads
        self.run = run or make_runner(net, self.backend, threads, calibration)  # the int8 check's runner is reused

    def logits(self, images) -> Tensor:
        """Logits [N, 10] for raw images (uint8 0-255 or float 0-1, [28, 28] or [N, 28, 28])."""
        # ONNX Runtime's session has its own thread count; changing PyTorch's costs up to 10 ms in older torch
        threads = contextlib.nullcontext() if self.backend.startswith("onnxruntime") else torch_threads(self.threads)
        X = as_images(images)
        check_digits(X)
        with threads:
            return self.run(normalize(X))

    def predict_proba(self, images) -> Tensor:
        """Class probabilities [N, 10]."""
        return F.softmax(self.logits(images).float(), dim=1)

    def predict(self, images) -> Tensor:
        """Predicted digits [N]."""
        return self.logits(images).argmax(1)

    def __repr__(self) -> str:
        return f"Predictor(backend={self.backend!r}, threads={self.threads})"


def main(argv: list[str] | None = None) -> None:
    """Command line: export the course model."""
    parser = argparse.ArgumentParser(prog="python -m digitlab.infer", description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, metavar="DIR", required=True,
                        help="write model.pt (TorchScript) and model.onnx of the course model into DIR")
    parser.add_argument("--fast", action="store_true", help="use the fast-mode course model")
    args = parser.parse_args(argv)
    from digitlab.checkpoints import course_model

    net, _ = course_model(fast=args.fast)
    print(export_torchscript(net, args.export / "model.pt"))
    if onnx_available():
        print(export_onnx(net, args.export / "model.onnx"))
    else:
        print(f"model.onnx skipped: {ONNX_HINT}")


if __name__ == "__main__":
    sys.exit(report_user_errors(main))
