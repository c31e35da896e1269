import os
import platform

import numpy as np
import pytest
import torch
from torch import nn

from digitlab import measure
from digitlab.models import DigitRecognitionCNN

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni

processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics bf16 i8mm
CPU implementer\t: 0x41
"""
AVX2_ONLY = "model name\t: AMD EPYC 7R13 Processor\nflags\t\t: fpu sse2 avx2 fma\n"


def use_cpuinfo(monkeypatch, tmp_path, text: str | None) -> None:
    """Make digitlab read `text` as this machine's /proc/cpuinfo (None: a machine without the file)."""
    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    monkeypatch.setattr(measure, "CPUINFO", path)
    measure.cpu_info.cache_clear()


@pytest.fixture(autouse=True)
def fresh_cpu_info():
    measure.cpu_info.cache_clear()
    yield
    measure.cpu_info.cache_clear()


@pytest.mark.parametrize(("text", "name", "flags", "bf16"), [
    (X86, "AMD EPYC 9R14 96-Core Processor", {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}, True),
    (ARM, "", {"fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "bf16", "i8mm"}, True),
    (AVX2_ONLY, "AMD EPYC 7R13 Processor", {"fpu", "sse2", "avx2", "fma"}, False),
    ("", "", set(), False),
])
def test_cpuinfo_gives_the_name_and_flags_on_x86_and_arm(monkeypatch, tmp_path, text, name, flags, bf16):
    assert measure.parse_cpuinfo(text) == {"name": name, "flags": flags}
    use_cpuinfo(monkeypatch, tmp_path, text)
    assert measure.cpu_flags() == flags and measure.bf16_supported() is bf16
    assert measure.cpu_name() == (name or platform.processor() or platform.machine())


def test_a_machine_without_cpuinfo_has_no_flags_and_still_a_name(monkeypatch, tmp_path):
    use_cpuinfo(monkeypatch, tmp_path, None)
    assert measure.cpu_flags() == frozenset() and not measure.bf16_supported()
    assert measure.cpu_name() == (platform.processor() or platform.machine()) and measure.cpu_name()


def test_cpuinfo_is_read_once(monkeypatch, tmp_path):
    use_cpuinfo(monkeypatch, tmp_path, X86)
    assert "avx512_bf16" in measure.cpu_flags()
    (tmp_path / "cpuinfo").write_text(AVX2_ONLY)
    assert "avx512_bf16" in measure.cpu_flags() and measure.cpu_name().startswith("AMD EPYC 9R14")


def test_the_machine_record_names_the_cpu_it_read(monkeypatch, tmp_path):
    use_cpuinfo(monkeypatch, tmp_path, AVX2_ONLY)
    info = measure.machine()
    assert info["cpu"] == "AMD EPYC 7R13 Processor" and info["cores"] == str(os.cpu_count())
    assert measure.run_record("cpu", "fp32")["cpu"] == "AMD EPYC 7R13 Processor"
    line = measure.describe({**info, "onnxruntime": "1.0"})
    assert line.startswith(f"AMD EPYC 7R13 Processor, {info['cores']} cores, {info['cpu_capability']}; Python ")
    assert line.endswith("; onnxruntime 1.0") and "\n" not in line
    assert "onnxruntime" not in measure.describe({k: v for k, v in info.items() if k != "onnxruntime"})


def test_torch_threads_sets_and_restores_the_count():
    before = torch.get_num_threads()
    with measure.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), measure.torch_threads(1):
        raise RuntimeError("a failure inside")
    assert torch.get_num_threads() == before


def test_torch_threads_changes_nothing_when_nothing_is_asked(monkeypatch):
    def refuse(n):
        raise AssertionError("torch.set_num_threads was called")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    with measure.torch_threads(None), measure.torch_threads(torch.get_num_threads()):
        pass


def test_call_times_times_each_call():
    calls = []
    times = measure.call_times(calls.append, 7, 5)
    assert calls == [7] * 5 and len(times) == 5 and all(t >= 0 for t in times)


def test_matmul_rate_and_the_share_of_it():
    assert measure.peak_share(1000, 6e6, 12.0) == pytest.approx(0.5)
    rate = measure.matmul_gflops(threads=1, n=128, repeats=2)
    assert np.isfinite(rate) and rate > 0
    assert measure.peak_gflops(rounds=2, repeats=2) > 1  # any CPU multiplies faster than a GFLOP/s


def test_multiply_adds_counted_by_hand():
    conv1 = 28 * 28 * 32 * 3 * 3
    conv2 = 14 * 14 * 64 * 32 * 3 * 3
    assert measure.multiply_adds(DigitRecognitionCNN()) == conv1 + conv2 + 3136 * 128 + 128 * 10
    grouped = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=2))
    assert measure.multiply_adds(grouped) == 28 * 28 * 4 * 9 + 28 * 28 * 4 * 2 * 9
