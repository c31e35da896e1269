"""Ablation grids: declare factors and seeds, run each config resumably, summarise over seeds."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from digitlab import data, models, train
from digitlab.data import mnist_splits, stratified_split
from digitlab.errors import DigitlabError
from digitlab.files import locked, write_text
from digitlab.models import DigitRecognitionCNN
from digitlab.settings import BUILD_DIR, RESULTS_DIR, machine
from digitlab.train import OPTIMIZERS, SCHEDULES, evaluate, fit, set_seed

RESULTS = RESULTS_DIR / "ablation.jsonl"
# Notebook 04's exercises save fast-mode runs here, never in the full-mode grid (the grader sets DIGITLAB_RESULTS).
FAST_EXERCISE_RESULTS = BUILD_DIR / "fast-exercise-runs.jsonl"

# The paper's network with the chapter's small-data training settings. A config is this dict
# with some values changed; `n_train=None` means all 55,000 training images.
PAPER = {"n_train": 1000, "num_epochs": 15, "batch_size": 64, "lr": 1e-3, "optimizer": "adam",
         "schedule": "onecycle", "weight_decay": 0.0, "augment": False,
         "batch_norm": True, "dropout1": 0.25, "dropout2": 0.5}
# The same network with none of the paper's three techniques against overfitting.
BARE = {**PAPER, "batch_norm": False, "dropout1": 0.0, "dropout2": 0.0, "schedule": "none"}
MODEL_KEYS = ("batch_norm", "dropout1", "dropout2")
TYPES = {"num_epochs": int, "batch_size": int, "lr": float, "optimizer": str, "schedule": str,
         "weight_decay": float, "augment": bool, "batch_norm": bool, "dropout1": float, "dropout2": float}
N_VAL = 1000          # validation images scored after every epoch (a fixed stratified part of the 5,000)
N_TRAIN_EVAL = 5000   # at most this many training images are re-scored at the end for train accuracy


def make_config(base: dict = PAPER, **changes) -> dict:
    """`base` with `changes`; `dropout=p` (or a pair) sets both dropout rates."""
    if "dropout" in changes:
        p = changes.pop("dropout")
        changes["dropout1"], changes["dropout2"] = (p, p) if np.isscalar(p) else p
    unknown = set(changes) - set(PAPER)
    if unknown:
        raise ValueError(f"Unknown config keys {sorted(unknown)}; a config has the keys {sorted(PAPER)} "
                         "(and `dropout` to set both dropout rates).")
    config = {**base, **changes}
    if set(config) != set(PAPER):
        raise ValueError(f"A config needs exactly the keys {sorted(PAPER)}; got {sorted(config)}.")
    for key, kind in TYPES.items():  # one spelling per value (0.0, not 0), so equal configs hash alike
        value = config[key]
        allowed = (int, float) if kind is float else kind
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, allowed):
            raise TypeError(f"config[{key!r}] must be a {kind.__name__}, not {value!r}.")
        config[key] = kind(value)
    n = config["n_train"]
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= 55_000):
        raise ValueError(f"n_train must be a whole number from 1 to 55,000 (or None for all), not {n!r}.")
    if n == 55_000:
        config["n_train"] = None
    for key, names in [("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)]:
        if config[key] not in names:
            raise ValueError(f"{key} must be one of {list(names)}, not {config[key]!r}.")
    return config


def grid(base: dict = PAPER, **factors) -> list[dict]:
    """Every combination of the factors' values (a full factorial), each applied to `base`."""
    names = list(factors)
    return [make_config(base, **dict(zip(names, values, strict=True)))
            for values in itertools.product(*(factors[n] for n in names))]


def one_at_a_time(base: dict = PAPER, **factors) -> list[dict]:
    """`base`, then `base` with one factor changed to each of its other values."""
    configs = [make_config(base)]
    for name, values in factors.items():
        for value in values:
            config = make_config(base, **{name: value})
            if config not in configs:
                configs.append(config)
    return configs


def config_key(config: dict) -> str:
    """A short stable hash that names a config."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def label(config: dict, ref: dict = PAPER, ref_name: str | None = None) -> str:
    """A short name for `config` that lists how it differs from `ref` (`ref_name` if it does not)."""
    parts = []
    if config["batch_norm"] != ref["batch_norm"]:
        parts.append("+BN" if config["batch_norm"] else "-BN")
    drop, ref_drop = (config["dropout1"], config["dropout2"]), (ref["dropout1"], ref["dropout2"])
    if drop != ref_drop:
        parts.append("-dropout" if drop == (0, 0) else
                     f"dropout {drop[0]:g}" if drop[0] == drop[1] else f"dropout {drop[0]:g}/{drop[1]:g}")
    if config["schedule"] != ref["schedule"]:
        parts.append("-schedule" if config["schedule"] == "none" else f"{config['schedule']} schedule")
    if config["augment"] != ref["augment"]:
        parts.append("+augment" if config["augment"] else "-augment")
    if config["weight_decay"] != ref["weight_decay"]:
        parts.append(f"wd {config['weight_decay']:g}")
    if config["n_train"] != ref["n_train"]:
        parts.append(f"{config['n_train'] or 55000:,} images")
    if config["num_epochs"] != ref["num_epochs"]:
        parts.append(f"{config['num_epochs']} epochs")
    for key in ("batch_size", "lr", "optimizer"):
        if config[key] != ref[key]:
            parts.append(f"{key} {config[key]:g}" if key == "lr" else f"{key} {config[key]}")
    if not parts:
        return ref_name or ("paper" if ref == PAPER else "bare" if ref == BARE else "reference")
    return " ".join(parts)


# Names in digitlab.data, .models and .train that a run never uses: editing them leaves results current.
NOT_IN_A_RUN = {"RECIPE", "FAST_RECIPE", "course_model", "load_or_train", "training_set", "_with_typed", "save",
                "load", "predict", "predict_proba", "_as_images", "cpu_name", "cpu_capability", "run_info",
                "count_parameters", "summary", "MNISTDataset"}


def code_version() -> str:
    """A hash of the course's code that decides a run's numbers: data, model and training code, `run_one`.

    The torch version, device, precision and CPU are recorded in each record, not hashed: a saved record
    stays current on any machine and any supported torch as long as the course's own code is unchanged.
    """
    parts = [inspect.getsource(run_one)]
    for module in (data, models, train):
        for name, obj in sorted(vars(module).items()):
            if name in NOT_IN_A_RUN:
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
                parts.append(inspect.getsource(obj))
            elif isinstance(obj, int | float | str | tuple | dict) and not name.startswith("__"):
                parts.append(f"{name} = {obj!r}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:10]


# Where and how a record was made: shown by `provenance`, compared by `setup_differences`, never hashed.
RUN_FIELDS = ("device", "precision", "cpu_capability", "threads", "torch")


def setup_differences(a: dict, b: dict) -> dict:
    """How two records' code and setup differ, as {field: (a's, b's)}; empty if they can agree bit for bit."""
    fields = ("code", "machine", *RUN_FIELDS)
    return {k: (a.get(k), b.get(k)) for k in fields if a.get(k) != b.get(k)}


def provenance(records: list[dict]) -> str:
    """Where and how records were made: one line per distinct setup, with the number of runs."""
    counts = {}
    for r in records:
        setup = f"{r['machine']}, {r.get('cpu_capability', '?')}, {r.get('precision', '?')} on {r['device']}, " \
                f"{r['threads']} threads, torch {r['torch']}"
        counts[setup] = counts.get(setup, 0) + 1
    return "\n".join(f"{n} run(s): {setup}" for setup, n in counts.items())


def load_data(n_train: int | None) -> dict:
    """The fixed splits for `n_train` images, plus the per-epoch validation part and a training sample."""
    splits = mnist_splits(n_train=n_train)
    X_val, y_val = splits["val"]
    _, keep = stratified_split(y_val, N_VAL, seed=0)
    X, y = splits["train"]
    return {**splits, "val_epoch": (X_val[keep], y_val[keep]),
            "train_eval": (X[:N_TRAIN_EVAL], y[:N_TRAIN_EVAL])}


def run_one(config: dict, seed: int, splits: dict | None = None, device: str = "auto", precision: str = "auto",
            progress: bool = False) -> dict:
    """Train the config once with `seed` and return its record (config, history, final metrics)."""
    config = make_config(config)
    splits = splits or load_data(config["n_train"])
    set_seed(seed)
    net = DigitRecognitionCNN(**{k: config[k] for k in MODEL_KEYS})
    fit_kwargs = {k: v for k, v in config.items() if k not in MODEL_KEYS and k != "n_train"}
    start = time.perf_counter()
    history = fit(net, splits["train"], splits["val_epoch"], seed=seed, device=device, precision=precision,
                  progress=progress, **fit_kwargs)
    run = history.pop("run")
    if len(history["epoch"]) < config["num_epochs"]:
        raise KeyboardInterrupt("Training was interrupted; the run is not recorded.")
    final = {}
    for split, (X, y) in [("train", splits["train_eval"]), ("val", splits["val"]), ("test", splits["test"])]:
        final[f"{split}_loss"], final[f"{split}_acc"] = evaluate(net, X, y)
    final["gap"] = final["train_acc"] - final["val_acc"]
    return {"key": config_key(config), "seed": seed, "code": code_version(), "config": config,
            "final": final, "history": history, "seconds": time.perf_counter() - start,
            "machine": "{cpu} ({arch})".format(**machine()), **{k: run[k] for k in RUN_FIELDS},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def load_records(path: str | Path) -> list[dict]:
    """Every record in a JSON-lines results file (none if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {i}: not a JSON record ({err}). The file was edited by hand "
                             "or corrupted: delete that line (its run will be redone) or the file.") from err
        missing = {"key", "seed", "code", "config", "final", "history"} - set(record)
        if missing:
            raise ValueError(f"{path}, line {i}: a record without {sorted(missing)}; delete that line "
                             "(its run will be redone).")
        records.append(record)
    return _collapse_duplicates(records, path)


def _collapse_duplicates(records: list[dict], path: Path) -> list[dict]:
    """Keep the last record of each config and seed (as `save_record` would), with a warning if any were dropped."""
    last = {(r["key"], r["seed"]): i for i, r in enumerate(records)}
    if len(last) < len(records):
        warnings.warn(f"{path} holds {len(records) - len(last)} duplicate record(s) of a config and seed "
                      "(files joined or edited by hand?); only the last of each is used.", stacklevel=3)
    return [r for i, r in enumerate(records) if last[(r["key"], r["seed"])] == i]


def save_record(record: dict, path: str | Path) -> None:
    """Add `record` to the results file atomically, replacing any older record of the same config and seed.

    The file is locked while it is rewritten, so processes that share it never lose each other's records.
    """
    with locked(path):
        kept = [r for r in load_records(path) if (r["key"], r["seed"]) != (record["key"], record["seed"])]
        lines = [json.dumps(r, sort_keys=True) for r in [*kept, record]]
        write_text(path, "\n".join(lines) + "\n")


def find(records: list[dict], config: dict, seed: int, code: str | None = None) -> dict | None:
    """The record of `config` and `seed` (made by code version `code` if given), or None."""
    for r in records:
        if r["config"] == config and r["seed"] == seed and code in (None, r["code"]):
            return r
    return None


def run_grid(configs: list[dict], seeds: list[int], path: str | Path = RESULTS, *, saved_only: bool = False,
             device: str = "auto", precision: str = "auto", progress: bool = True) -> list[dict]:
    """Run every (config, seed) that `path` lacks for the current code and return all their records.

    Each finished run is saved at once, so an interrupted grid resumes where it stopped.
    With `saved_only`, nothing is trained: saved records are returned, older code versions included.
    """
    configs = [make_config(c) for c in configs]
    code, saved = code_version(), load_records(path)
    todo = [(c, s) for c in configs for s in seeds if find(saved, c, s, code) is None]
    if saved_only:
        missing = [(label(c), s) for c, s in todo if find(saved, c, s) is None]
        if missing:
            raise FileNotFoundError(f"{path} has no record of {len(missing)} run(s), e.g. {missing[:3]}. "
                                    "Run the grid without saved_only (full mode) to train them.")
        if todo:
            warnings.warn(f"{len(todo)} of the {len(configs) * len(seeds)} records in {path} come from another "
                          f"version of the code (now {code}); run the grid in full mode to refresh them.",
                          stacklevel=2)
        return [find(saved, c, s, code) or find(saved, c, s) for c in configs for s in seeds]
    cache = {}
    bar = tqdm(todo, unit="run", disable=not progress or not todo)
    for config, seed in bar:
        bar.set_description(f"{label(config)}, seed {seed}")
        if config["n_train"] not in cache:
            cache = {config["n_train"]: load_data(config["n_train"])}
        save_record(run_one(config, seed, cache[config["n_train"]], device=device, precision=precision), path)
    saved = load_records(path)
    return [find(saved, c, s, code) for c in configs for s in seeds]


def select(records: list[dict], config: dict) -> list[dict]:
    """The records of one config (all its seeds)."""
    config = make_config(config)
    return [r for r in records if r["config"] == config]


def mean(records: list[dict], metric: str) -> float:
    """The mean of final `metric` over records."""
    return float(np.mean([r["final"][metric] for r in records]))


def mean_by(records: list[dict], key: str, metric: str) -> dict:
    """The mean of final `metric` over the records that share each value of config `key`."""
    groups = {}
    for r in records:
        groups.setdefault(r["config"][key], []).append(r["final"][metric])
    return {value: float(np.mean(v)) for value, v in groups.items()}


# Two-sided 95% critical values of Student's t distribution for 1 to 30 degrees of freedom (numpy has no
# t quantiles, and scipy is not a dependency). Beyond 30 the value for 30 is used: a slightly wider interval.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """The two-sided 95% critical value of Student's t with `df` degrees of freedom (df >= 1)."""
    if isinstance(df, bool) or not isinstance(df, int | np.integer) or df < 1:
        raise ValueError(f"degrees of freedom must be a whole number of at least 1, not {df!r}.")
    return T95[min(int(df), len(T95)) - 1]


def interval(values) -> dict:
    """Mean, standard error and 95% t interval of independent repeats (e.g. one difference per seed).

    Returns {"mean", "se", "low", "high", "n", "df"}; with a single value the spread is unknown and
    se, low and high are NaN.
    """
    v = np.asarray(values, dtype=float).ravel()
    if len(v) == 0:
        raise ValueError("no values: an interval needs at least one.")
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
    _refuse_duplicates(a)
    _refuse_duplicates(b)

    def match(r: dict) -> tuple:
        rest = {k: v for k, v in r["config"].items() if k not in keys}
        return (json.dumps(rest, sort_keys=True) if keys else "", r["seed"])

    if not keys:
        for runs, name in ((a, "a"), (b, "b")):
            if len({config_key(r["config"]) for r in runs}) > 1:
                raise ValueError(f"{name} holds several configs: pass the factor that tells them apart, "
                                 "or one config per side.")
    partners = {}
    for r in b:
        if match(r) in partners:
            raise ValueError(f"b holds two runs that could partner the same run (seed {r['seed']}); "
                             "name every config key that differs in `factor`.")
        partners[match(r)] = r
    diffs = []
    for r in a:
        partner = partners.get(match(r))
        if partner is None:
            raise ValueError(f"no run in b to pair with {label(r['config'])!r}, seed {r['seed']}: train the "
                             "same seeds on both sides.")
        diffs.append(r["final"][metric] - partner["final"][metric])
    if not diffs:
        raise ValueError("a holds no runs.")
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


def summarize(records: list[dict], ref: dict = PAPER, ref_name: str | None = None) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the final metrics, one row per config, in order.

    The `seeds` column says how many runs (one per seed) each row averages.
    """
    metrics = ["train_acc", "val_acc", "gap", "test_acc", "train_loss", "val_loss"]
    _refuse_duplicates(records)
    rows, order = {}, []
    for r in records:
        name = label(r["config"], ref, ref_name)
        if name not in rows:
            rows[name], order = [], [*order, name]
        rows[name].append(r["final"])
    table = []
    for name in order:
        finals = pd.DataFrame(rows[name])
        row = {"config": name, "seeds": len(finals)}
        for m in metrics:
            row[m], row[f"{m}_std"] = finals[m].mean(), finals[m].std(ddof=1) if len(finals) > 1 else 0.0
        table.append(row)
    return pd.DataFrame(table).set_index("config")


def _refuse_duplicates(records: list[dict]) -> None:
    """Refuse a list that holds a config's seed twice: its mean would count that run twice."""
    seen = set()
    for r in records:
        run = (config_key(r["config"]), r["seed"])
        if run in seen:
            raise DigitlabError(f"the records hold seed {r['seed']} of {label(r['config'])!r} more than once; "
                                "a mean over them would count that run twice. Pass each run once.")
        seen.add(run)


def show(table: pd.DataFrame, metrics: tuple[str, ...] = ("train_acc", "val_acc", "gap", "test_acc")):
    """The summary as 'mean ± std' strings (accuracies and gaps in percent), for reading."""
    out = pd.DataFrame({"seeds": table["seeds"]})
    for m in metrics:
        scale, digits = (1, 3) if m.endswith("loss") else (100, 2)
        out[m] = [f"{scale * a:.{digits}f} ± {scale * s:.{digits}f}"
                  for a, s in zip(table[m], table[f"{m}_std"], strict=True)]
    return out


def plot_curves(records: list[dict], metric: str = "val_loss", ref: dict = PAPER, ref_name: str | None = None,
                ax=None):
    """One line per config: `metric` per epoch, the mean over seeds, with each seed faint behind it."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    groups = {}
    for r in records:
        groups.setdefault(label(r["config"], ref, ref_name), []).append(r["history"][metric])
    for i, (name, curves) in enumerate(groups.items()):
        color = f"C{i % 10}"
        curves = np.array(curves)
        epochs = np.arange(1, curves.shape[1] + 1)
        for c in curves:
            ax.plot(epochs, c, color=color, alpha=0.25, lw=0.8)
        ax.plot(epochs, curves.mean(0), color=color, lw=2, label=f"{name} ({len(curves)} seeds)")
    ax.set(xlabel="epoch", ylabel=metric.replace("_", " "))
    ax.legend(fontsize="small")
    return ax


def plot_gaps(table: pd.DataFrame, metric: str = "gap", ax=None):
    """Bars of `metric` per config (in percentage points) with the standard deviation over seeds."""
    ax = ax or plt.subplots(figsize=(6, 0.4 * len(table) + 1))[1]
    ax.barh(table.index, 100 * table[metric], xerr=100 * table[f"{metric}_std"], color="C0", capsize=3)
    ax.invert_yaxis()
    ax.set(xlabel=f"{metric.replace('_', ' ')} (percentage points)" if metric == "gap"
           else f"{metric.replace('_', ' ')} (%)")
    return ax
