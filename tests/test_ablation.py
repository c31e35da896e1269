import dataclasses
import json
import shutil
import subprocess
import sys

import matplotlib
import nbformat
import pandas as pd
import pytest
import torch

from digitlab import ablation
from digitlab.ablation import BARE, PAPER, config_label, grid, load_records, make_config, one_at_a_time, run_grid
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
        calls.append((config_label(config), seed))
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(config, seed, *args, **kwargs)

    monkeypatch.setattr(ablation, "run_one", counted)
    return calls


def test_make_config_changes_a_base_and_rejects_unknown_keys():
    assert make_config(dropout=0) == make_config(dropout1=0.0, dropout2=0.0) == make_config(dropout=(0, 0))
    assert make_config(dropout=0).key() == make_config(dropout=0.0).key()
    assert make_config(dropout=(0.1, 0.2)).dropout2 == 0.2
    assert make_config(n_train=55_000).n_train is None
    assert make_config(BARE, lr=0.01) == dataclasses.replace(BARE, lr=0.01) and make_config() == PAPER
    record_config = dict(BARE)  # a record's config, as saved in the results file
    assert make_config(record_config) == BARE and make_config(record_config, dropout=0.5).dropout1 == 0.5
    old = {k: v for k, v in record_config.items() if k != "typed_digits"}  # saved before typed_digits existed
    assert make_config(old) == BARE
    for bad in [{"batchnorm": False}, {"dropuot": 0.1}]:
        with pytest.raises(ValueError, match="Unknown config keys"):
            make_config(**bad)
        with pytest.raises(ValueError, match="Unknown config keys"):
            make_config({**record_config, **bad})
    with pytest.raises(TypeError, match="batch_norm"):  # RunConfig's own checks (tests/test_config.py)
        make_config(batch_norm="no")


def test_grid_and_one_at_a_time():
    configs = grid(PAPER, batch_norm=[True, False], dropout=[0.0, 0.5], schedule=["onecycle", "none"])
    assert len(configs) == 8
    assert len({c.key() for c in configs}) == 8
    assert make_config(BARE) in configs
    removed = one_at_a_time(PAPER, batch_norm=[False], dropout=[0.0], schedule=["none"])
    assert [config_label(c) for c in removed] == ["paper", "-BN", "-dropout", "-schedule"]
    added = one_at_a_time(BARE, batch_norm=[True], dropout=[(0.25, 0.5)], schedule=["onecycle"])
    assert [config_label(c, BARE) for c in added] == ["bare", "+BN", "dropout 0.25/0.5", "onecycle schedule"]
    assert config_label(BARE) == "-BN -dropout -schedule"
    everything = make_config(BARE, n_train=None)
    assert config_label(everything, everything, "bare, all data") == "bare, all data"
    assert config_label(make_config(n_train=None, augment=True, weight_decay=1e-4)) == \
        "+augment wd 0.0001 55,000 images"
    assert config_label(make_config(label_smoothing=0.1)) == "label smoothing 0.1"


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
    for line, kind in [("3", "int"), ("[1, 2]", "list"), ('"run"', "str")]:
        path.write_text(line + "\n")
        with pytest.raises(ValueError, match=f"line 1: a JSON {kind}, not a record"):
            load_records(path)
    assert load_records(tmp_path / "missing.jsonl") == []
    with pytest.raises(ValueError, match="is a folder, not a results file"):
        load_records(tmp_path)


def test_a_record_without_its_key_is_never_written(tmp_path):
    path = tmp_path / "grid.jsonl"
    with pytest.raises(ValueError, match=r"a record without \['code', 'config', 'final', 'history', 'key'\]"):
        ablation.save_record({"seed": 1}, path)
    assert not path.exists()


def test_failed_write_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "grid.jsonl"
    good = {"key": "a", "seed": 0, "code": "c", "config": {}, "final": {}, "history": {}}
    ablation.save_record(good, path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        ablation.save_record({**good, "seed": 1, "final": {"x": object()}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid.jsonl"]


def test_summarize_means_and_standard_deviations(fake_record):
    records = [fake_record(PAPER, 0, 0.90), fake_record(PAPER, 1, 0.92), fake_record(BARE, 0, 0.80, val_acc=0.8)]
    table = ablation.summarize(records)
    assert list(table.index) == ["paper", "-BN -dropout -schedule"]
    assert table.loc["paper", "test_acc"] == pytest.approx(0.91)
    assert table.loc["paper", "test_acc_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert table.loc["paper", "seeds"] == 2
    assert table.loc["-BN -dropout -schedule", "gap"] == pytest.approx(0.2)
    assert ablation.show_table(table).loc["paper", "test_acc"] == "91.00 ± 1.41"
    assert len(ablation.records_of(records, PAPER)) == 2


def test_plots_draw_one_line_per_config_and_seed(fake_record):
    records = [fake_record(PAPER, 0, 0.9), fake_record(PAPER, 1, 0.9), fake_record(BARE, 0, 0.8)]
    ax = ablation.plot_curves(records, "val_loss")
    assert len(ax.lines) == 3 + 2  # a faint line per seed, a bold mean per config
    ax = ablation.plot_gaps(ablation.summarize(records))
    assert len(ax.patches) == 2


def test_mean_by_groups_on_a_config_key(fake_record):
    records = [fake_record(PAPER, 0, 0.90), fake_record(PAPER, 1, 0.92), fake_record(BARE, 0, 0.80)]
    assert ablation.mean_by(records, "batch_norm", "test_acc") == pytest.approx({True: 0.91, False: 0.80})


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
    monkeypatch.setattr(ablation.run_config, "RECIPE", ablation.make_config(lr=1.0))  # no grid run uses it
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


def test_summarize_refuses_a_run_counted_twice(fake_record):
    records = [fake_record(PAPER, 0, 0.90), fake_record(PAPER, 1, 0.92), fake_record(PAPER, 1, 0.92)]
    with pytest.raises(ValueError, match="seed 1 of 'paper' more than once"):
        ablation.summarize(records)


def test_the_exercises_results_file_is_read_as_a_shell_writes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DIGITLAB_RESULTS", " ~/runs.jsonl ")
    assert ablation.exercise_results() == tmp_path / "runs.jsonl"
    monkeypatch.setenv("RUNS", str(tmp_path))
    monkeypatch.setenv("DIGITLAB_RESULTS", "$RUNS/mine.jsonl")
    assert ablation.exercise_results() == tmp_path / "mine.jsonl"
    monkeypatch.setenv("DIGITLAB_RESULTS", str(tmp_path))
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        ablation.exercise_results()
    monkeypatch.setenv("DIGITLAB_RESULTS", "")
    assert ablation.exercise_results() in (ablation.FAST_EXERCISE_RESULTS, ablation.RESULTS)
