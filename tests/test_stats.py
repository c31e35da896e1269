import numpy as np
import pytest

from digitlab import stats
from digitlab.ablation import BARE, PAPER, grid


def test_t95_is_the_two_sided_95_percent_t_value():
    assert stats.t95(1) == pytest.approx(12.706) and stats.t95(2) == pytest.approx(4.303)
    assert stats.t95(11) == pytest.approx(2.201) and stats.t95(30) == pytest.approx(2.042)
    assert stats.t95(1000) == stats.t95(30)  # beyond the table: the value for 30, a slightly wider interval
    assert all(a > b for a, b in zip(stats.T95[:-1], stats.T95[1:], strict=True))
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="degrees of freedom"):
            stats.t95(bad)


def test_interval_of_repeats():
    result = stats.interval([1.0, 2.0, 3.0])
    assert result["mean"] == pytest.approx(2.0) and result["n"] == 3 and result["df"] == 2
    assert result["se"] == pytest.approx(1 / 3 ** 0.5)
    half = 4.303 / 3 ** 0.5
    assert result["low"] == pytest.approx(2.0 - half) and result["high"] == pytest.approx(2.0 + half)
    single = stats.interval([0.5])
    assert single["mean"] == 0.5 and single["df"] == 0 and np.isnan(single["low"]) and np.isnan(single["se"])
    with pytest.raises(ValueError, match="no values"):
        stats.interval([])


def test_paired_differences_pair_runs_by_seed(fake_record):
    a = [fake_record(PAPER, 1, 0.94), fake_record(PAPER, 0, 0.90), fake_record(PAPER, 2, 0.94)]
    b = [fake_record(BARE, 0, 0.88), fake_record(BARE, 1, 0.92), fake_record(BARE, 2, 0.91)]
    assert stats.paired_differences(a, b, "test_acc") == pytest.approx([0.02, 0.02, 0.03])  # seed by seed
    result = stats.compare(a, b, "test_acc", scale=100)
    assert result["mean"] == pytest.approx(7 / 3) and result["n"] == 3
    assert result["low"] > 0 and stats.verdict(result) == "higher"
    # pairing removes what a seed shares: the same differences with a large seed effect added give the same result
    shift = {0: -0.05, 1: 0.0, 2: 0.03}
    a2 = [fake_record(PAPER, r["seed"], r["final"]["test_acc"] + shift[r["seed"]]) for r in a]
    b2 = [fake_record(BARE, r["seed"], r["final"]["test_acc"] + shift[r["seed"]]) for r in b]
    assert stats.compare(a2, b2, "test_acc", scale=100)["high"] == pytest.approx(result["high"])
    with pytest.raises(ValueError, match="no run in b to pair"):
        stats.paired_differences(a, b[:2], "test_acc")
    with pytest.raises(ValueError, match="several configs"):
        stats.paired_differences(a + [fake_record(BARE, 0, 0.8)], b, "test_acc")
    with pytest.raises(ValueError, match="more than once"):
        stats.paired_differences(a + a[:1], b, "test_acc")


def test_paired_differences_in_a_factorial_pair_configs_that_differ_only_in_the_factor(fake_record):
    configs = grid(PAPER, batch_norm=[True, False], dropout=[0.25, 0.0])
    acc = {(True, 0.25): 0.95, (True, 0.0): 0.96, (False, 0.25): 0.93, (False, 0.0): 0.94}
    records = [fake_record(c, s, acc[c.batch_norm, c.dropout1] + 0.001 * s) for c in configs for s in (0, 1)]
    with_bn = [r for r in records if r["config"]["batch_norm"]]
    without_bn = [r for r in records if not r["config"]["batch_norm"]]
    assert stats.paired_differences(with_bn, without_bn, "test_acc", "batch_norm") == pytest.approx([0.02] * 4)
    drop = [r for r in records if r["config"]["dropout1"] > 0]
    no_drop = [r for r in records if r["config"]["dropout1"] == 0]
    both = ("dropout1", "dropout2")
    assert stats.paired_differences(drop, no_drop, "test_acc", both) == pytest.approx([-0.01] * 4)
    with pytest.raises(ValueError, match="no run in b to pair"):  # dropout2 differs too: name both keys
        stats.paired_differences(drop, no_drop, "test_acc", "dropout1")
    with pytest.raises(ValueError, match="could partner the same run"):  # b holds both sides of the factor
        stats.paired_differences(with_bn, records, "test_acc", "batch_norm")


def test_effects_table_and_its_display(fake_record):
    a = [fake_record(PAPER, s, acc, val_acc=v) for s, acc, v in [(0, 0.94, 0.93), (1, 0.95, 0.95), (2, 0.96, 0.94)]]
    b = [fake_record(BARE, s, acc, val_acc=v) for s, acc, v in [(0, 0.92, 0.90), (1, 0.93, 0.91), (2, 0.94, 0.92)]]
    table = stats.effects({"paper - bare": (a, b)})
    assert list(table.index) == [("paper - bare", "val_loss"), ("paper - bare", "val_acc")]
    assert table.loc[("paper - bare", "val_acc"), "mean"] == pytest.approx(3.0)  # in points
    assert table.loc[("paper - bare", "val_loss"), "verdict"] == "no difference the seeds can resolve"
    shown = stats.show_effects(table)
    assert shown.loc[("paper - bare", "val_acc"), "pairs"] == 3
    assert shown.loc[("paper - bare", "val_acc"), "difference [95% interval]"].startswith("+3.00 [")
    assert shown.loc[("paper - bare", "val_loss"), "difference [95% interval]"] == "+0.000 [+0.000, +0.000]"
    one = stats.show_effects(stats.effects({"one": (a[:1], b[:1])}, metrics=(("test_acc", 100.0),)))
    assert one.iloc[0]["difference [95% interval]"] == "+2.00 (one seed)"


def test_verdict_reads_the_interval():
    assert stats.verdict({"n": 3, "low": 0.1, "high": 0.5}) == "higher"
    assert stats.verdict({"n": 3, "low": -0.5, "high": -0.1}, "raises", "lowers") == "lowers"
    assert stats.verdict({"n": 3, "low": -0.1, "high": 0.5}) == "no difference the seeds can resolve"
    assert stats.verdict(stats.interval([0.3])) == "one seed: no interval"
