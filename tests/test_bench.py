import re

import pytest
import torch

from digitlab import bench
from digitlab.data import load_mnist, mnist_splits, normalize


def test_smoke_run_writes_a_report(tmp_path):
    out = tmp_path / "RESULTS.md"
    bench.main(["--smoke", "--out", str(out)])
    text = out.read_text()
    assert "Smoke run" in text and "Not a measurement" in text
    m = bench.setup()
    assert m["cpu"] in text and torch.__version__ in text
    assert f"{m['cpu_capability']})" in text and f"precision {m['precision']}" in text
    for heading in ("Images per second", "Time to 99.0%", "Best accuracy in 5 minutes", "Targets"):
        assert f"## {heading}" in text
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]  # no temporary file left behind
    shares = re.search(r"reference uses ([\d.]+)% of that rate and digitlab's default path ([\d.]+)%", text)
    assert shares and all(0 < float(s) < 100 for s in shares.groups())
    assert f"{6 * 4_241_152:,} FLOP per image" in text  # 3 x 2 x the paper's network's multiply-adds


def test_peak_share_is_the_training_arithmetic_over_the_measured_rate():
    assert bench.peak_share(1000, 6e6, 12.0) == pytest.approx(0.5)
    assert bench.peak_gflops(rounds=2, repeats=2) > 1  # any CPU multiplies faster than a GFLOP/s


def test_reference_pipeline_is_the_standard_one():
    loader = bench.reference_loader(n_train=256)
    assert loader.batch_size == 64 and len(loader.dataset) == 256
    assert isinstance(loader.sampler, torch.utils.data.RandomSampler)
    dataset = loader.dataset
    X, y = dataset[0]
    assert X.shape == (1, 28, 28) and X.dtype == torch.float32 and isinstance(y, int)
    # ToTensor + Normalize on a PIL image gives exactly digitlab's normalised input of the same image.
    torch.testing.assert_close(X, normalize(dataset.images[0][None])[0])
    # It serves the same 55,000 training images that digitlab trains on (the first 256 of them here).
    train_X, _ = mnist_splits()["train"]
    torch.testing.assert_close(normalize(dataset.images[:4]), train_X[:4])
    assert len(load_mnist("train")[0]) == 60_000


def fake_results(speedup=6.0, sprint_acc=0.991, sprint_s=25.0, long_acc=0.996, long_s=290.0, same_acc=True):
    runs = lambda acc, s: [{"seed": i, "seconds": s, "test_acc": acc} for i in range(3)]  # noqa: E731
    return {"speedup": speedup, "reference_epoch": {"test_acc": 0.98},
            "digitlab_epoch": {"test_acc": 0.985 if same_acc else 0.975},
            "sprint": {1: runs(0.985, sprint_s / 2), 2: runs(sprint_acc, sprint_s)},
            "long": runs(long_acc, long_s)}


@pytest.mark.parametrize("changes, holds", [
    ({}, [True, True, True]),
    ({"speedup": 4.9}, [False, True, True]),
    ({"same_acc": False}, [False, True, True]),
    ({"sprint_acc": 0.989}, [True, False, True]),
    ({"sprint_s": 31.0}, [True, False, True]),
    ({"long_acc": 0.9949}, [True, True, False]),
    ({"long_s": 301.0}, [True, True, False]),
])
def test_targets_are_judged_on_the_measured_numbers(changes, holds):
    assert [ok for _, _, ok in bench.targets(fake_results(**changes))] == holds


def test_time_to_99_takes_the_shortest_sprint_that_reaches_it():
    results = fake_results()
    assert bench.time_to_99(results)[0] == 2
    results["sprint"][1] = results["sprint"][2]
    assert bench.time_to_99(results)[0] == 1
    assert bench.time_to_99(fake_results(sprint_acc=0.98)) is None


def test_technique_table_measures_every_row_and_restores_threads():
    threads = torch.get_num_threads()
    rows = bench.techniques(n_train=256, num_batches=2)
    assert torch.get_num_threads() == threads
    names = [name for name, _ in rows]
    assert names[0].startswith("reference") and "channels-last" in names[2] and "bfloat16" in names[-1]
    assert all(ips > 0 for _, ips in rows)
    table = bench.techniques_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| 1.00 |" in table.splitlines()[2]


def test_technique_rows_take_turns_and_keep_their_fastest(monkeypatch):
    calls = []

    def fake_speed(X, y, batch_size=64, channels_last=True, bf16=False, compiled=False, threads=None,
                   num_batches=30, repeats=1, seed=0):
        calls.append((batch_size, channels_last, bf16, threads))
        return 100.0 * len(calls)  # later measurements are faster: each row must keep its last round

    monkeypatch.setattr(bench, "train_speed", fake_speed)
    monkeypatch.setattr(bench, "reference_loader", lambda n_train=None: None)
    monkeypatch.setattr(bench, "reference_train", lambda loader, num_batches=None: (None, calls.append("ref") or 1.0))
    rows = bench.techniques(n_train=256, num_batches=2, repeats=3)
    per_round = len(rows)
    assert len(calls) == 3 * per_round
    assert calls[:per_round] == calls[per_round: 2 * per_round]  # every round measures every row, in order
    assert [ips for _, ips in rows[1:]] == [100.0 * (2 * per_round + i + 1) for i in range(1, per_round)]
