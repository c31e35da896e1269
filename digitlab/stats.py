"""Statistics over seeds: paired differences between configs' runs, with 95% t intervals and a verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from digitlab.ablation import config_label, make_config, refuse_duplicates
from digitlab.errors import DigitlabError

# Two-sided 95% critical values of Student's t distribution for 1 to 30 degrees of freedom (numpy has no
# t quantiles, and scipy is not a dependency). Beyond 30 the value for 30 is used: a slightly wider interval.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """The two-sided 95% critical value of Student's t with `df` degrees of freedom (df >= 1)."""
    if isinstance(df, bool) or not isinstance(df, int | np.integer) or df < 1:
        raise DigitlabError(f"degrees of freedom must be a whole number of at least 1, not {df!r}.")
    return T95[min(int(df), len(T95)) - 1]


def interval(values) -> dict:
    """Mean, standard error and 95% t interval of independent repeats (e.g. one difference per seed).

    Returns {"mean", "se", "low", "high", "n", "df"}; with a single value the spread is unknown and
    se, low and high are NaN.
    """
    v = np.asarray(values, dtype=float).ravel()
    if len(v) == 0:
        raise DigitlabError("no values: an interval needs at least one.")
    n, m = len(v), float(v.mean())
    if n == 1:
        return {"mean": m, "se": float("nan"), "low": float("nan"), "high": float("nan"), "n": 1, "df": 0}
    se = float(v.std(ddof=1) / np.sqrt(n))
    half = t95(n - 1) * se
    return {"mean": m, "se": se, "low": m - half, "high": m + half, "n": n, "df": n - 1}


def paired_differences(a: list[dict], b: list[dict], metric: str, factor: str | tuple[str, ...] = ()) -> list[float]:
    """Final `metric` of each run in `a` minus that of its partner in `b`: the run with the same seed.

    Runs with the same seed share the initial weights and the order of the batches, so the difference of a
    pair is free of most of what a seed changes. Without `factor`, `a` and `b` hold one config each. With
    `factor` (a config key, or several such as ("dropout1", "dropout2")), a run's partner is the run of `b`
    whose config differs from its own only in those keys: the pairs of a factorial design.
    """
    keys = (factor,) if isinstance(factor, str) else tuple(factor)
    refuse_duplicates(a)
    refuse_duplicates(b)

    def match(r: dict) -> tuple:
        rest = {k: v for k, v in r["config"].items() if k not in keys}
        return (json.dumps(rest, sort_keys=True) if keys else "", r["seed"])

    if not keys:
        for runs, name in ((a, "a"), (b, "b")):
            if len({make_config(r["config"]) for r in runs}) > 1:
                raise DigitlabError(f"{name} holds several configs: pass the factor that tells them apart, "
                                 "or one config per side.")
    partners = {}
    for r in b:
        if match(r) in partners:
            raise DigitlabError(f"b holds two runs that could partner the same run (seed {r['seed']}); "
                             "name every config key that differs in `factor`.")
        partners[match(r)] = r
    diffs = []
    for r in a:
        partner = partners.get(match(r))
        if partner is None:
            raise DigitlabError(f"no run in b to pair with {config_label(r['config'])!r}, seed {r['seed']}: train the "
                             "same seeds on both sides.")
        diffs.append(r["final"][metric] - partner["final"][metric])
    if not diffs:
        raise DigitlabError("a holds no runs.")
    return diffs


def compare(a: list[dict], b: list[dict], metric: str, factor: str | tuple[str, ...] = (),
            scale: float = 1.0) -> dict:
    """The mean paired difference a − b in final `metric` (times `scale`) with its 95% interval.

    See `paired_differences` for how runs are paired and `interval` for what is returned; `verdict`
    reads the result.
    """
    return interval(scale * np.array(paired_differences(a, b, metric, factor)))


def verdict(result: dict, more: str = "higher", less: str = "lower") -> str:
    """What an interval from `compare` allows one to say: `more`, `less` or that the seeds cannot tell."""
    if result["n"] < 2:
        return "one seed: no interval"
    if result["low"] > 0:
        return more
    if result["high"] < 0:
        return less
    return "no difference the seeds can resolve"


# Validation metrics and the scale at which `effects` reports them: losses as they are, accuracies in points.
VAL_METRICS = (("val_loss", 1.0), ("val_acc", 100.0))


def effects(comparisons: dict, metrics: tuple = VAL_METRICS) -> pd.DataFrame:
    """Paired differences with 95% intervals, one row per comparison and metric.

    `comparisons` maps a name to `(a, b)` (one config each, paired on the seed) or `(a, b, factor)` (the
    pairs of a factorial, see `paired_differences`); `metrics` holds (metric, scale) pairs. The table is
    indexed by (name, metric) and has the columns of `interval` plus `verdict`.
    """
    rows = []
    for name, (a, b, *factor) in comparisons.items():
        for metric, scale in metrics:
            result = compare(a, b, metric, *factor, scale=scale)
            rows.append({"effect": name, "metric": metric, **result, "verdict": verdict(result)})
    return pd.DataFrame(rows).set_index(["effect", "metric"])


def show_effects(table: pd.DataFrame) -> pd.DataFrame:
    """An `effects` table for reading: 'mean [low, high]' (losses to 3 decimals, accuracies and gaps in points
    to 2) and the verdict."""
    def fmt(row, metric):
        digits = 3 if metric.endswith("loss") else 2
        if row["n"] < 2:
            return f"{row['mean']:+.{digits}f} (one seed)"
        return f"{row['mean']:+.{digits}f} [{row['low']:+.{digits}f}, {row['high']:+.{digits}f}]"

    return pd.DataFrame({"pairs": table["n"].astype(int),
                         "difference [95% interval]": [fmt(row, m) for (_, m), row in table.iterrows()],
                         "verdict": table["verdict"]}, index=table.index)
