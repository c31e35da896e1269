import json
import re

import pytest
import torch

from digitlab import bench
from digitlab.errors import DigitlabError


def test_smoke_run_writes_a_report(tmp_path):
    out = tmp_path / "RESULTS.md"
    bench.main(["--smoke", "--out", str(out)])
    text = out.read_text()
    assert "Smoke run" in text and "Not a measurement" in text
    m = bench.setup()
    assert m["cpu"] in text and torch.__version__ in text
    assert f"CPU capability {m['cpu_capability']})" in text and f"precision {m['precision']}" in text
    for heading in ("Images per second", "Recipe `one_epoch`", "Recipe `short`", "Recipe `best`", "Targets"):
        assert f"## {heading}" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RESULTS.json", "RESULTS.md"]  # no temporary file left
    results = bench.load_results(tmp_path / "RESULTS.json")
    assert bench.targets_table(results) in text and list(results["parts"]) == list(bench.PARTS)
    assert all(p["recipe"]["num_epochs"] == 1 for name, p in results["parts"].items() if name != "speed")
    shares = re.findall(r"\| [\d,]+ \| ([\d.]+)% \|", text)  # images/s and share of the peak
    assert len(shares) == 3 and all(0 < float(s) < 100 for s in shares)
    assert f"{6 * 4_241_152:,} FLOP per image" in text  # 3 x 2 x the paper's network's multiply-adds
    assert re.search(r"dropout masks takes -?\d+% of digitlab's training step", text)


def test_parts_measured_later_join_the_earlier_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "measure", lambda part, smoke: {"date": "now", "part": part})
    monkeypatch.setattr(bench, "report", lambda results: json.dumps(sorted(results["parts"])))
    out = tmp_path / "RESULTS.md"
    bench.main(["--parts", "speed", "--out", str(out)])
    bench.main(["--parts", "short", "one_epoch", "--out", str(out)])
    assert json.loads(out.read_text()) == ["one_epoch", "short", "speed"]
    saved = json.loads(out.with_suffix(".json").read_text())
    saved["machine"]["cpu"] = "another CPU"  # measured elsewhere: not mixed with this machine's numbers
    out.with_suffix(".json").write_text(json.dumps(saved))
    bench.main(["--parts", "best", "--out", str(out)])
    assert json.loads(out.read_text()) == ["best"]


@pytest.mark.parametrize("text", ["", "[1, 2]", '{"machine": {}}'])
def test_unreadable_results_are_a_clear_error(tmp_path, text):
    path = tmp_path / "RESULTS.json"
    path.write_text(text)
    with pytest.raises(DigitlabError, match="python -m digitlab.bench"):
        bench.load_results(path)


def fake_results(accs=None, seeds=3):
    accs = accs or {"one_epoch": 0.991, "short": 0.996, "best": 0.997}
    runs = lambda acc: [{"seed": i, "seconds": 1.0, "test_acc": acc} for i in range(seeds)]  # noqa: E731
    return {"parts": {part: {"recipe": dict(bench.RECIPES[part]), "runs": runs(acc)} for part, acc in accs.items()}}


@pytest.mark.parametrize("accs, holds", [
    ({"one_epoch": 0.990, "short": 0.995, "best": 0.996}, [True, True, True]),
    ({"one_epoch": 0.9899, "short": 0.995, "best": 0.996}, [False, True, True]),
    ({"one_epoch": 0.990, "short": 0.9949, "best": 0.996}, [True, False, True]),
    ({"one_epoch": 0.990, "short": 0.995, "best": 0.9959}, [True, True, False]),
    ({"short": 0.999}, [None, True, None]),
])
def test_targets_are_judged_on_the_measured_numbers(accs, holds):
    assert [ok for _, _, ok in bench.targets(fake_results(accs))] == holds


def test_a_target_needs_every_seed():
    assert [ok for _, _, ok in bench.targets(fake_results(seeds=1))] == [False, False, False]


def test_recipes_train_the_papers_network_within_their_epochs():
    assert [bench.RECIPES[p].num_epochs for p in bench.TARGETS] == [1, 8, 30]
    assert all(r.settings("model") == bench.RunConfig().settings("model") and r.n_train is None
               and r.typed_digits == 0 for r in bench.RECIPES.values())
