import json
import shutil
import subprocess
import sys

import matplotlib
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from digitlab import ablation
from digitlab.ablation import BARE, PAPER, grid, label, load_records, make_config, one_at_a_time, run_grid
from digitlab.settings import NOTEBOOKS_DIR

matplotlib.use("Agg")
NB04 = NOTEBOOKS_DIR / "04_overfitting_ablations.ipynb"
TINY = make_config(PAPER, n_train=64, num_epochs=2, batch_size=32)


@pytest.fixture
def tiny_data(small_splits, monkeypatch):
    """Replace the MNIST splits of a run by small ones, so that a run takes well under a second."""
    X, y = small_splits["train"]
    splits = {"train": (X[:64], y[:64]), "train_eval": (X[:64], y[:64]),
              "val_epoch": tuple(t[:100] for t in small_splits["val"]),
              "val": tuple(t[:200] for t in small_splits["val"]),
              "test": tuple(t[:200] for t in small_splits["test"])}
    monkeypatch.setattr(ablation, "load_data", lambda n_train: splits)
    return splits


def count_runs(monkeypatch, fail_at=None):
    """Count calls of run_one; raise KeyboardInterrupt on call number `fail_at`."""
    calls = []
    real = ablation.run_one

    def counted(config, seed, *args, **kwargs):
        calls.append((label(config), seed))
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(config, seed, *args, **kwargs)

    monkeypatch.setattr(ablation, "run_one", counted)
    return calls


def test_make_config_normalises_and_rejects_bad_input():
    assert make_config(dropout=0) == make_config(dropout1=0.0, dropout2=0.0)
    assert ablation.config_key(make_config(dropout=0)) == ablation.config_key(make_config(dropout=0.0))
    assert make_config(dropout=(0.1, 0.2))["dropout2"] == 0.2
    assert make_config(n_train=55_000)["n_train"] is None
    with pytest.raises(ValueError, match="Unknown config keys"):
        make_config(batchnorm=False)
    with pytest.raises(TypeError, match="batch_norm"):
        make_config(batch_norm="no")
    with pytest.raises(TypeError, match="num_epochs"):
        make_config(num_epochs=2.5)
    with pytest.raises(ValueError, match="n_train"):
        make_config(n_train=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_config(schedule="cosine")


def test_grid_and_one_at_a_time():
    configs = grid(PAPER, batch_norm=[True, False], dropout=[0.0, 0.5], schedule=["onecycle", "none"])
    assert len(configs) == 8
    assert len({ablation.config_key(c) for c in configs}) == 8
    assert make_config(BARE) in configs
    removed = one_at_a_time(PAPER, batch_norm=[False], dropout=[0.0], schedule=["none"])
    assert [label(c) for c in removed] == ["paper", "-BN", "-dropout", "-schedule"]
    added = one_at_a_time(BARE, batch_norm=[True], dropout=[(0.25, 0.5)], schedule=["onecycle"])
    assert [label(c, BARE) for c in added] == ["bare", "+BN", "dropout 0.25/0.5", "onecycle schedule"]
    assert label(BARE) == "-BN -dropout -schedule"
    assert label(make_config(BARE, n_train=None), make_config(BARE, n_train=None), "bare, all data") == "bare, all data"
    assert label(make_config(n_train=None, augment=True, weight_decay=1e-4)) == "+augment wd 0.0001 55,000 images"


def test_run_grid_records_every_run_once_and_resumes(tiny_data, tmp_path, monkeypatch):
    path = tmp_path / "results" / "grid.jsonl"
    configs = [TINY, make_config(TINY, batch_norm=False)]
    calls = count_runs(monkeypatch, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_grid(configs, [0, 1], path, progress=False)
    assert len(load_records(path)) == 2  # the two finished runs, nothing half-written
    assert not list(path.parent.glob(".*.tmp"))
    calls.clear()
    records = run_grid(configs, [0, 1], path, progress=False)
    assert calls == [("-BN 64 images 2 epochs batch_size 32", 0), ("-BN 64 images 2 epochs batch_size 32", 1)]
    assert [(r["config"]["batch_norm"], r["seed"]) for r in records] == [(True, 0), (True, 1), (False, 0), (False, 1)]
    calls.clear()
    assert run_grid(configs, [0, 1], path, progress=False) == records
    assert calls == []
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and len({(json.loads(x)["key"], json.loads(x)["seed"]) for x in lines}) == 4
    record = records[0]
    assert len(record["history"]["val_loss"]) == 2
    assert record["final"]["gap"] == pytest.approx(record["final"]["train_acc"] - record["final"]["val_acc"])
    assert record["code"] == ablation.code_version()


def test_records_from_other_code_or_config_are_not_taken_for_current(tiny_data, tmp_path, monkeypatch):
    path = tmp_path / "grid.jsonl"
    run_grid([TINY], [0], path, progress=False)
    stale = load_records(path)[0]
    stale["code"] = "0123456789"
    stale["final"]["test_acc"] = -1.0
    path.write_text(json.dumps(stale) + "\n")
    other = make_config(TINY, lr=2e-3)
    calls = count_runs(monkeypatch)
    with pytest.raises(FileNotFoundError, match="no record of 1 run"):
        run_grid([other], [0], path, saved_only=True)
    with pytest.warns(UserWarning, match="another version of the code"):
        assert run_grid([TINY], [0], path, saved_only=True)[0]["final"]["test_acc"] == -1.0
    assert calls == []
    fresh = run_grid([TINY], [0], path, progress=False)[0]
    assert len(calls) == 1 and fresh["final"]["test_acc"] >= 0
    assert len(load_records(path)) == 1  # the stale record was replaced, not duplicated


def test_same_seed_same_numbers(tiny_data):
    a, b = (ablation.run_one(TINY, 3, tiny_data) for _ in range(2))
    assert a["final"] == b["final"]
    assert a["history"]["val_loss"] == b["history"]["val_loss"]


def test_bad_results_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "grid.jsonl"
    path.write_text('{"key": "a"\n')
    with pytest.raises(ValueError, match="line 1: not a JSON record"):
        load_records(path)
    path.write_text('{"key": "a"}\n')
    with pytest.raises(ValueError, match="line 1: a record without"):
        load_records(path)
    assert load_records(tmp_path / "missing.jsonl") == []


def test_failed_write_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "grid.jsonl"
    good = {"key": "a", "seed": 0, "code": "c", "config": {}, "final": {}, "history": {}}
    ablation.save_record(good, path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        ablation.save_record({**good, "seed": 1, "final": {"x": object()}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid.jsonl"]


def fake(config, seed, test_acc, train_acc=1.0, val_acc=0.9):
    final = {"train_acc": train_acc, "val_acc": val_acc, "gap": train_acc - val_acc, "test_acc": test_acc,
             "train_loss": 0.0, "val_loss": 0.3}
    return {"config": make_config(config), "seed": seed, "final": final,
            "history": {"val_loss": [0.5, 0.4, 0.3]}}


def test_summarize_means_and_standard_deviations():
    records = [fake(PAPER, 0, 0.90), fake(PAPER, 1, 0.92), fake(BARE, 0, 0.80, val_acc=0.8)]
    table = ablation.summarize(records)
    assert list(table.index) == ["paper", "-BN -dropout -schedule"]
    assert table.loc["paper", "test_acc"] == pytest.approx(0.91)
    assert table.loc["paper", "test_acc_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert table.loc["paper", "seeds"] == 2
    assert table.loc["-BN -dropout -schedule", "gap"] == pytest.approx(0.2)
    assert ablation.show(table).loc["paper", "test_acc"] == "91.00 ± 1.41"
    assert len(ablation.select(records, PAPER)) == 2


def test_plots_draw_one_line_per_config_and_seed():
    records = [fake(PAPER, 0, 0.9), fake(PAPER, 1, 0.9), fake(BARE, 0, 0.8)]
    ax = ablation.plot_curves(records, "val_loss")
    assert len(ax.lines) == 3 + 2  # a faint line per seed, a bold mean per config
    ax = ablation.plot_gaps(ablation.summarize(records))
    assert len(ax.patches) == 2


def test_mean_by_groups_on_a_config_key():
    records = [fake(PAPER, 0, 0.90), fake(PAPER, 1, 0.92), fake(BARE, 0, 0.80)]
    assert ablation.mean_by(records, "batch_norm", "test_acc") == pytest.approx({True: 0.91, False: 0.80})


def test_t95_is_the_two_sided_95_percent_t_value():
    assert ablation.t95(1) == pytest.approx(12.706) and ablation.t95(2) == pytest.approx(4.303)
    assert ablation.t95(11) == pytest.approx(2.201) and ablation.t95(30) == pytest.approx(2.042)
    assert ablation.t95(1000) == ablation.t95(30)  # beyond the table: the value for 30, a slightly wider interval
    assert all(a > b for a, b in zip(ablation.T95[:-1], ablation.T95[1:], strict=True))
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="degrees of freedom"):
            ablation.t95(bad)


def test_interval_of_repeats():
    result = ablation.interval([1.0, 2.0, 3.0])
    assert result["mean"] == pytest.approx(2.0) and result["n"] == 3 and result["df"] == 2
    assert result["se"] == pytest.approx(1 / 3 ** 0.5)
    half = 4.303 / 3 ** 0.5
    assert result["low"] == pytest.approx(2.0 - half) and result["high"] == pytest.approx(2.0 + half)
    single = ablation.interval([0.5])
    assert single["mean"] == 0.5 and single["df"] == 0 and np.isnan(single["low"]) and np.isnan(single["se"])
    with pytest.raises(ValueError, match="no values"):
        ablation.interval([])


def test_paired_differences_pair_runs_by_seed():
    a = [fake(PAPER, 1, 0.94), fake(PAPER, 0, 0.90), fake(PAPER, 2, 0.94)]
    b = [fake(BARE, 0, 0.88), fake(BARE, 1, 0.92), fake(BARE, 2, 0.91)]
    assert ablation.paired_differences(a, b, "test_acc") == pytest.approx([0.02, 0.02, 0.03])  # seed by seed
    result = ablation.compare(a, b, "test_acc", scale=100)
    assert result["mean"] == pytest.approx(7 / 3) and result["n"] == 3
    assert result["low"] > 0 and ablation.verdict(result) == "higher"
    # pairing removes what a seed shares: the same differences with a large seed effect added give the same result
    shift = {0: -0.05, 1: 0.0, 2: 0.03}
    a2 = [fake(PAPER, r["seed"], r["final"]["test_acc"] + shift[r["seed"]]) for r in a]
    b2 = [fake(BARE, r["seed"], r["final"]["test_acc"] + shift[r["seed"]]) for r in b]
    assert ablation.compare(a2, b2, "test_acc", scale=100)["high"] == pytest.approx(result["high"])
    with pytest.raises(ValueError, match="no run in b to pair"):
        ablation.paired_differences(a, b[:2], "test_acc")
    with pytest.raises(ValueError, match="several configs"):
        ablation.paired_differences(a + [fake(BARE, 0, 0.8)], b, "test_acc")
    with pytest.raises(ValueError, match="more than once"):
        ablation.paired_differences(a + a[:1], b, "test_acc")


def test_paired_differences_in_a_factorial_pair_configs_that_differ_only_in_the_factor():
    configs = grid(PAPER, batch_norm=[True, False], dropout=[0.25, 0.0])
    acc = {(True, 0.25): 0.95, (True, 0.0): 0.96, (False, 0.25): 0.93, (False, 0.0): 0.94}
    records = [fake(c, s, acc[c["batch_norm"], c["dropout1"]] + 0.001 * s) for c in configs for s in (0, 1)]
    with_bn = [r for r in records if r["config"]["batch_norm"]]
    without_bn = [r for r in records if not r["config"]["batch_norm"]]
    assert ablation.paired_differences(with_bn, without_bn, "test_acc", "batch_norm") == pytest.approx([0.02] * 4)
    drop = [r for r in records if r["config"]["dropout1"] > 0]
    no_drop = [r for r in records if r["config"]["dropout1"] == 0]
    both = ("dropout1", "dropout2")
    assert ablation.paired_differences(drop, no_drop, "test_acc", both) == pytest.approx([-0.01] * 4)
    with pytest.raises(ValueError, match="no run in b to pair"):  # dropout2 differs too: name both keys
        ablation.paired_differences(drop, no_drop, "test_acc", "dropout1")
    with pytest.raises(ValueError, match="could partner the same run"):  # b holds both sides of the factor
        ablation.paired_differences(with_bn, records, "test_acc", "batch_norm")


def test_effects_table_and_its_display():
    a = [fake(PAPER, s, acc, val_acc=v) for s, acc, v in [(0, 0.94, 0.93), (1, 0.95, 0.95), (2, 0.96, 0.94)]]
    b = [fake(BARE, s, acc, val_acc=v) for s, acc, v in [(0, 0.92, 0.90), (1, 0.93, 0.91), (2, 0.94, 0.92)]]
    table = ablation.effects({"paper - bare": (a, b)})
    assert list(table.index) == [("paper - bare", "val_loss"), ("paper - bare", "val_acc")]
    assert table.loc[("paper - bare", "val_acc"), "mean"] == pytest.approx(3.0)  # in points
    assert table.loc[("paper - bare", "val_loss"), "verdict"] == "no difference the seeds can resolve"
    shown = ablation.show_effects(table)
    assert shown.loc[("paper - bare", "val_acc"), "pairs"] == 3
    assert shown.loc[("paper - bare", "val_acc"), "difference [95% interval]"].startswith("+3.00 [")
    assert shown.loc[("paper - bare", "val_loss"), "difference [95% interval]"] == "+0.000 [+0.000, +0.000]"
    one = ablation.show_effects(ablation.effects({"one": (a[:1], b[:1])}, metrics=(("test_acc", 100.0),)))
    assert one.iloc[0]["difference [95% interval]"] == "+2.00 (one seed)"


def test_verdict_reads_the_interval():
    assert ablation.verdict({"n": 3, "low": 0.1, "high": 0.5}) == "higher"
    assert ablation.verdict({"n": 3, "low": -0.5, "high": -0.1}, "raises", "lowers") == "lowers"
    assert ablation.verdict({"n": 3, "low": -0.1, "high": 0.5}) == "no difference the seeds can resolve"
    assert ablation.verdict(ablation.interval([0.3])) == "one seed: no interval"


def test_plot_effects_marks_intervals_that_exclude_zero():
    from digitlab.plots import BLUE, GREY, plot_effects

    table = pd.DataFrame({"mean": [1.0, -0.2, -0.5], "low": [0.5, -0.6, -0.9], "high": [1.5, 0.2, -0.1]},
                         index=["BatchNorm", "dropout", "schedule"])
    ax = plot_effects(table, xlabel="change in validation accuracy (points)", title="main effects")
    bars = [c for c in ax.containers]
    assert len(bars) == 2  # one errorbar group each for resolved and unresolved effects
    resolved, unresolved = bars
    assert list(resolved.lines[0].get_xdata()) == [1.0, -0.5] and resolved.lines[0].get_color() == BLUE
    assert list(unresolved.lines[0].get_xdata()) == [-0.2] and unresolved.lines[0].get_color() == GREY
    assert [t.get_text() for t in ax.get_yticklabels()] == ["BatchNorm", "dropout", "schedule"]
    assert ax.get_xlabel().startswith("change") and ax.get_title() == "main effects"
    with pytest.raises(ValueError, match="lacks the columns"):
        plot_effects(table.drop(columns="low"))


def test_code_version_follows_the_code_a_run_uses(monkeypatch):
    before = ablation.code_version()
    monkeypatch.setitem(ablation.train.RECIPE, "lr", 1.0)  # the course recipe is not used by a grid run
    assert ablation.code_version() == before
    monkeypatch.setattr(ablation.data, "MNIST_MEAN", 0.2)  # the inputs of every run change
    assert ablation.code_version() != before


def fake_other_machine(monkeypatch):
    """Pretend to be another torch version on a CPU with AVX-512 and bf16 (patching no digitlab code)."""
    monkeypatch.setattr("torch.__version__", "2.99.0+other")
    monkeypatch.setattr("torch.backends.cpu.get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv("DIGITLAB_PRECISION", "bf16")


def test_code_version_ignores_torch_version_and_machine(monkeypatch):
    before = ablation.code_version()
    fake_other_machine(monkeypatch)
    assert ablation.code_version() == before


def test_records_name_their_setup(tiny_data, monkeypatch):
    monkeypatch.delenv("DIGITLAB_PRECISION", raising=False)
    record = ablation.run_one(TINY, 0, tiny_data, device="cpu", precision="fp32")
    assert record["precision"] == "fp32" and record["device"] == "cpu"
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["torch"] == str(torch.__version__) and "run" not in record["history"]
    other = {**record, "precision": "bf16", "torch": "2.99.0"}
    assert ablation.setup_differences(record, record) == {}
    assert ablation.setup_differences(record, other) == {"precision": ("fp32", "bf16"),
                                                         "torch": (record["torch"], "2.99.0")}
    line = ablation.provenance([record, record, other])
    assert line.splitlines()[0].startswith("2 run(s): ") and "fp32 on cpu" in line and "bf16 on cpu" in line
    assert record["cpu_capability"] in line


def notebook_grid() -> tuple[list[dict], list[int]]:
    """The configs and seeds notebook 04 runs, taken from its own settings and grid cells (in full mode)."""
    nb = nbformat.read(NB04, as_version=4)
    cells = [c.source for c in nb.cells
             if c.cell_type == "code" and ("SEEDS =" in c.source or "GRID =" in c.source)]
    namespace = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITLAB_FAST", "0")
        for source in cells:
            exec(source, namespace)
    return namespace["GRID"], namespace["SEEDS"]


def test_shipped_grid_is_reused_on_another_torch_and_cpu(tmp_path, monkeypatch):
    """The committed results stay current whatever torch version, CPU kind or precision opens notebook 04."""
    configs, seeds = notebook_grid()
    path = tmp_path / "ablation.jsonl"
    shutil.copy(ablation.RESULTS, path)
    fake_other_machine(monkeypatch)

    def no_training(*args, **kwargs):
        raise AssertionError("a saved run was trained again")

    monkeypatch.setattr(ablation, "fit", no_training)  # not run_one: code_version hashes run_one's source
    records = run_grid(configs, seeds, path, progress=False)
    assert len(records) == len(configs) * len(seeds) == 42
    shipped = load_records(ablation.RESULTS)  # the chapter's grid and the exercises' model answers
    for record in shipped:
        assert run_grid([record["config"]], [record["seed"]], path, progress=False) == [record]
    assert {r["code"] for r in shipped} == {ablation.code_version()}
    assert path.read_bytes() == ablation.RESULTS.read_bytes()  # nothing rewritten
    for r in shipped:  # and each says where it was made
        assert {"precision", "cpu_capability", "device", "torch", "machine", "threads"} <= r.keys()


WRITER = """
import sys
from digitlab.ablation import save_record
writer, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for i in range(n):
    save_record({"key": f"w{writer}", "seed": i, "code": "c", "config": {}, "final": {}, "history": {}}, path)
"""


def test_concurrent_writers_lose_no_record(tmp_path):
    path, writers, n = tmp_path / "grid.jsonl", 4, 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(w), str(n), str(path)]) for w in range(writers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    records = load_records(path)
    assert sorted((r["key"], r["seed"]) for r in records) == sorted((f"w{w}", i) for w in range(writers)
                                                                     for i in range(n))
    assert [p.name for p in tmp_path.iterdir()] == ["grid.jsonl"]


def test_duplicate_records_are_collapsed_with_a_warning(tmp_path):
    path = tmp_path / "grid.jsonl"
    old, new = ({"key": "a", "seed": 0, "code": "c", "config": {}, "final": {"x": x}, "history": {}} for x in (1, 2))
    path.write_text("".join(json.dumps(r) + "\n" for r in (old, new, new)))
    with pytest.warns(UserWarning, match="2 duplicate record"):
        assert load_records(path) == [new]


def test_summarize_refuses_a_run_counted_twice():
    records = [fake(PAPER, 0, 0.90), fake(PAPER, 1, 0.92), fake(PAPER, 1, 0.92)]
    with pytest.raises(ValueError, match="seed 1 of 'paper' more than once"):
        ablation.summarize(records)
