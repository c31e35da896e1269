import time

import pytest

from digitlab import infer, infer_bench
from digitlab.data import normalize
from digitlab.infer import onnx_available
from digitlab.infer_bench import benchmark, format_table, latency_ms, targets_met, write_report
from digitlab.train import predict


def test_latency_measures_wall_time():
    p50, p99 = latency_ms(lambda x: time.sleep(0.002), None, repeats=20, warmup=2)
    assert 2 <= p50 <= p99 < 50


def test_benchmark_smoke(fast_net, test_images, tmp_path):
    X, y = normalize(test_images[0]), test_images[1]
    backends = ("eager", "fused", "onnxruntime") if onnx_available() else ("eager", "fused")
    rows = benchmark(fast_net, (X, y), X[:100], backends=backends, repeats=50, progress=False)
    assert [r["backend"] for r in rows] == list(backends)
    eager = rows[0]
    assert eager["latency_speedup"] == 1.0 and eager["accuracy_change"] == 0.0
    assert eager["accuracy"] == (predict(fast_net, test_images[0]) == y).float().mean().item()
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["images_per_s"] > 0
        assert r["latency_speedup"] == pytest.approx(eager["p50_ms"] / r["p50_ms"])
        assert r["throughput_speedup"] == pytest.approx(r["images_per_s"] / eager["images_per_s"])
        assert abs(r["accuracy_change"]) <= 0.2  # float32 paths: at most one of 500 images differs
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| fused |" in table
    report = write_report(rows, tmp_path / "INFERENCE.md", command="pytest")
    text = report.read_text()
    assert "Machine:" in text and table in text and "p50 <= 0.1 ms" in text
    assert [p.name for p in tmp_path.iterdir()] == ["INFERENCE.md"]
    with pytest.raises(ValueError, match="eager"):
        benchmark(fast_net, (X, y), X[:100], backends=("fused",), progress=False)


def test_benchmark_backends_take_turns(fast_net, test_images, monkeypatch):
    order = []
    make = infer.make_runner

    def recording_runner(fast_net, backend, threads=1, calibration=None):
        run = make(fast_net, backend, threads, calibration)

        def recorded(X):
            order.append((backend, len(X)))
            return run(X)
        return recorded

    monkeypatch.setattr(infer_bench, "make_runner", recording_runner)
    X, y = normalize(test_images[0][:64]), test_images[1][:64]
    rows = benchmark(fast_net, (X, y), X, backends=("eager", "fused"), batch_size=32, repeats=20, rounds=2,
                     progress=False)
    assert [r["backend"] for r in rows] == ["eager", "fused"]
    timed = order[-2 * (10 + 2 + 10 + 2):]  # after building and warming up: 2 rounds of 10 calls and 2 batches each
    backends = [b for b, _ in timed]
    assert backends == (["eager"] * 12 + ["fused"] * 12) * 2  # eager, fused, eager, fused: they take turns
    assert [n for _, n in timed[:12]] == [1] * 10 + [32, 32]


def test_missing_onnxruntime_skips_its_row(fast_net, test_images, monkeypatch):
    def missing():
        raise ModuleNotFoundError(f"onnxruntime is not installed. {infer.ONNX_HINT}")

    monkeypatch.setattr(infer, "_onnxruntime", missing)
    X, y = normalize(test_images[0][:100]), test_images[1][:100]
    rows = benchmark(fast_net, (X, y), X, backends=("eager", "onnxruntime"), repeats=10, progress=False)
    assert rows[1] == {"backend": "onnxruntime", "skipped": f"onnxruntime is not installed. {infer.ONNX_HINT}"}
    assert "skipped" in format_table(rows)
    assert "onnxruntime" not in targets_met(rows)["accuracy"]


def test_targets_met():
    rows = [{"backend": "eager", "p50_ms": 0.5, "images_per_s": 2000.0, "accuracy_change": 0.0},
            {"backend": "fast", "p50_ms": 0.09, "images_per_s": 25_000.0, "accuracy_change": -0.05},
            {"backend": "lossy", "p50_ms": 0.05, "images_per_s": 30_000.0, "accuracy_change": -0.3}]
    assert targets_met(rows) == {"latency": ["fast", "lossy"], "throughput": ["fast", "lossy"],
                                 "accuracy": ["eager", "fast"]}
    assert targets_met(rows, {"latency": 0.06, "throughput": 26_000, "accuracy": 0.4}) == {
        "latency": ["lossy"], "throughput": ["lossy"], "accuracy": ["eager", "fast", "lossy"]}
    assert [infer_bench.target_text(k, v) for k, v in infer_bench.TARGETS.items()] == [
        "p50 <= 0.1 ms", ">= 20,000 images/s", "accuracy within 0.1 points"]
