import re

import pytest
import torch

from digitlab import bench


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RESULTS.json", "RESULTS.md"]  # no temporary file left
    results = bench.load_results(tmp_path / "RESULTS.json")
    assert bench.targets_table(results) in text and list(results["sprint"]) == [1]
    shares = re.search(r"reference uses ([\d.]+)% of that rate and digitlab's default path ([\d.]+)%", text)
    assert shares and all(0 < float(s) < 100 for s in shares.groups())
    assert f"{6 * 4_241_152:,} FLOP per image" in text  # 3 x 2 x the paper's network's multiply-adds


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
