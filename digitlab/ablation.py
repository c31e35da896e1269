"""Ablation grids: declare configs and seeds, run each resumably, summarise the runs over seeds."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from digitlab import config as run_config
from digitlab import data, models, train
from digitlab.checkpoints import training_set
from digitlab.config import RunConfig
from digitlab.data import mnist_splits, stratified_split
from digitlab.errors import DigitlabError, MissingFileError
from digitlab.files import locked, write_text
from digitlab.measure import machine
from digitlab.models import DigitRecognitionCNN
from digitlab.settings import BUILD_DIR, FAST, GRADING, GRADING_IMAGES, RESULTS_DIR
from digitlab.train import evaluate, fit, require_finished, set_seed

RESULTS = RESULTS_DIR / "ablation.jsonl"
# Notebook 04's exercises save fast-mode runs here, never in the full-mode grid (the grader sets DIGITLAB_RESULTS).
FAST_EXERCISE_RESULTS = BUILD_DIR / "fast-exercise-runs.jsonl"


def exercise_results() -> Path:
    """Where notebook 04's exercises save their runs: $DIGITLAB_RESULTS if set (`~` and `$VARS` expanded), else
    FAST_EXERCISE_RESULTS in quick mode and the grid, RESULTS, in full mode."""
    given = os.path.expandvars(os.path.expanduser(os.environ.get("DIGITLAB_RESULTS", "").strip()))
    path = Path(given) if given else FAST_EXERCISE_RESULTS if FAST else RESULTS
    if path.is_dir() or given.endswith(("/", os.sep)):
        raise DigitlabError(f"DIGITLAB_RESULTS={given} is a folder; give a file name such as "
                            f"{Path(given) / 'runs.jsonl'}.")
    return path

# The paper's network with the chapter's small-data training settings; a config is this one with some
# settings changed (`make_config`).
PAPER = RunConfig(n_train=1000, num_epochs=15, batch_size=64, lr=1e-3, schedule="onecycle")
# The same network with none of the paper's three techniques against overfitting.
BARE = dataclasses.replace(PAPER, batch_norm=False, dropout1=0.0, dropout2=0.0, schedule="none")
N_VAL = 1000          # validation images scored after every epoch (a fixed stratified part of the 5,000)
N_TRAIN_EVAL = 5000   # at most this many training images are re-scored at the end for train accuracy


def make_config(base: RunConfig | dict = PAPER, **changes) -> RunConfig:
    """`base` (a RunConfig, or a record's config) with `changes`; `dropout=p` (or a pair) sets both dropout rates."""
    if "dropout" in changes:
        p = changes.pop("dropout")
        changes["dropout1"], changes["dropout2"] = (p, p) if np.isscalar(p) else p
    settings = {**base, **changes}
    names = {f.name for f in dataclasses.fields(RunConfig)}
    if set(settings) - names:
        raise DigitlabError(f"Unknown config keys {sorted(set(settings) - names)}; a config has the keys "
                            f"{sorted(names)} (and `dropout` to set both dropout rates).")
    return RunConfig(**settings)


def grid(base: RunConfig = PAPER, **factors) -> list[RunConfig]:
    """Every combination of the factors' values (a full factorial), each applied to `base`."""
    names = list(factors)
    return [make_config(base, **dict(zip(names, values, strict=True)))
            for values in itertools.product(*(factors[n] for n in names))]


def one_at_a_time(base: RunConfig = PAPER, **factors) -> list[RunConfig]:
    """`base`, then `base` with one factor changed to each of its other values."""
    configs = [make_config(base)]
    for name, values in factors.items():
        for value in values:
            config = make_config(base, **{name: value})
            if config not in configs:
                configs.append(config)
    return configs


def config_label(config: RunConfig | dict, ref: RunConfig = PAPER, ref_name: str | None = None) -> str:
    """A short name for `config` that lists how it differs from `ref` (`ref_name` if it does not)."""
    config, ref = make_config(config), make_config(ref)
    parts = []
    if config.batch_norm != ref.batch_norm:
        parts.append("+BN" if config.batch_norm else "-BN")
    drop, ref_drop = (config.dropout1, config.dropout2), (ref.dropout1, ref.dropout2)
    if drop != ref_drop:
        parts.append("-dropout" if drop == (0, 0) else
                     f"dropout {drop[0]:g}" if drop[0] == drop[1] else f"dropout {drop[0]:g}/{drop[1]:g}")
    if config.schedule != ref.schedule:
        parts.append("-schedule" if config.schedule == "none" else f"{config.schedule} schedule")
    if config.augment != ref.augment:
        parts.append("+augment" if config.augment else "-augment")
    if config.weight_decay != ref.weight_decay:
        parts.append(f"wd {config.weight_decay:g}")
    if config.label_smoothing != ref.label_smoothing:
        parts.append(f"label smoothing {config.label_smoothing:g}")
    if config.n_train != ref.n_train:
        parts.append(f"{config.n_train or 55000:,} images")
    if config.typed_digits != ref.typed_digits:
        parts.append(f"{config.typed_digits:,} typed digits")
    if config.num_epochs != ref.num_epochs:
        parts.append(f"{config.num_epochs} epochs")
    for key in ("batch_size", "lr", "optimizer"):
        value = getattr(config, key)
        if value != getattr(ref, key):
            parts.append(f"{key} {value:g}" if key == "lr" else f"{key} {value}")
    if not parts:
        return ref_name or ("paper" if ref == PAPER else "bare" if ref == BARE else "reference")
    return " ".join(parts)


# Names in digitlab.config, .data, .models and .train that a run never uses: editing them leaves results current.
NOT_IN_A_RUN = {"RECIPE", "FAST_RECIPE", "RECIPES", "lr_schedule", "predict", "predict_proba", "batched_logits",
                "as_images", "count_parameters", "summary", "MNISTDataset",
                # What refuses bad input and stops a diverged or interrupted run: it decides whether a run happens,
                # never its numbers, so making it stricter keeps the saved runs current.
                "check_config", "check_device_name", "check_precision", "one_of", "KINDS", "check_inputs",
                "check_normalised", "_check_fit", "_check_progress", "DIVERGED_LOSS_RATIO", "CHANCE_ACC",
                "CHANCE_MIN_IMAGES", "idx_layout", "MNISTFileError", "mnist_file", "_candidates", "_download",
                "_uncompressed", "_verify", "check_seed", "check_split_sizes", "_check_weights", "MAX_WEIGHT",
                "require_finished",
                # Where a run happens and in which precision: recorded in every record (RUN_FIELDS).
                "get_device", "choose_precision", "DEVICE_TYPES", "PRECISIONS"}


def code_version() -> str:
    """A hash of the course's code that decides a run's numbers: config, data, model and training code, and how
    `run_one` loads its data and trains.

    The torch version, device, precision and CPU are recorded in each record, not hashed: a saved record
    stays current on any machine and any supported torch as long as the course's own code is unchanged.
    The typed digits of a config with `typed_digits` come from `digitlab.non_mnist`, which is not hashed: the
    grids of the course use none.
    """
    parts = [inspect.getsource(f) for f in (run_one, load_data, training_set)]
    parts += [f"N_VAL = {N_VAL}", f"N_TRAIN_EVAL = {N_TRAIN_EVAL}", *(["grading mode"] if GRADING else [])]
    for module in (run_config, data, models, train):
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


def load_data(config: RunConfig) -> dict:
    """The fixed splits `config` trains and is scored on, plus the per-epoch validation part and a training sample."""
    splits = mnist_splits(n_train=config.n_train)
    if GRADING:  # scored on fixed stratified parts of the validation and test images (settings.GRADING)
        for name in ("val", "test"):
            X, y = splits[name]
            _, part = stratified_split(y, GRADING_IMAGES, seed=0)
            splits[name] = (X[part], y[part])
    X_val, y_val = splits["val"]
    _, keep = stratified_split(y_val, N_VAL, seed=0)
    X, y = splits["train"]
    return {**splits, "train": training_set(config, splits), "val_epoch": (X_val[keep], y_val[keep]),
            "train_eval": (X[:N_TRAIN_EVAL], y[:N_TRAIN_EVAL])}


def run_one(config: dict, seed: int, splits: dict | None = None, device: str = "auto", precision: str = "auto",
            progress: bool = False) -> dict:
    """Train the config once with `seed` and return its record (config, history, final metrics)."""
    config = make_config(config)
    splits = splits or load_data(config)
    set_seed(seed)
    net = DigitRecognitionCNN(**config.settings("model"))
    start = time.perf_counter()
    history = fit(net, splits["train"], splits["val_epoch"], config, seed=seed, device=device, precision=precision,
                  progress=progress)
    require_finished(history, "the run is not recorded")
    run = history.pop("run")
    final = {}
    for split, (X, y) in [("train", splits["train_eval"]), ("val", splits["val"]), ("test", splits["test"])]:
        final[f"{split}_loss"], final[f"{split}_acc"] = evaluate(net, X, y)
    final["gap"] = final["train_acc"] - final["val_acc"]
    return {"key": config.key(), "seed": seed, "code": code_version(), "config": dict(config),
            "final": final, "history": history, "seconds": time.perf_counter() - start,
            "machine": "{cpu} ({arch})".format(**machine()), **{k: run[k] for k in RUN_FIELDS},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


RECORD_FIELDS = {"key", "seed", "code", "config", "final", "history"}   # what every saved record holds


def load_records(path: str | Path) -> list[dict]:
    """Every record in a JSON-lines results file (none if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise DigitlabError(f"{path} is a folder, not a results file; give the path of a .jsonl file.")
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DigitlabError(f"{path}, line {i}: not a JSON record ({err}). The file was edited by hand "
                             "or corrupted: delete that line (its run will be redone) or the file.") from err
        if not isinstance(record, dict):
            raise DigitlabError(f"{path}, line {i}: a JSON {type(record).__name__}, not a record; delete that line "
                             "(its run will be redone).")
        missing = RECORD_FIELDS - set(record)
        if missing:
            raise DigitlabError(f"{path}, line {i}: a record without {sorted(missing)}; delete that line "
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
    missing = RECORD_FIELDS - set(record)
    if missing:
        raise DigitlabError(f"a record without {sorted(missing)} cannot be saved in {path}: make records with run_one.")
    with locked(path):
        kept = [r for r in load_records(path) if (r["key"], r["seed"]) != (record["key"], record["seed"])]
        lines = [json.dumps(r, sort_keys=True) for r in [*kept, record]]
        write_text(path, "\n".join(lines) + "\n")


def find_record(records: list[dict], config: RunConfig, seed: int, code: str | None = None) -> dict | None:
    """The record of `config` and `seed` (made by code version `code` if given), or None."""
    config = make_config(config)
    for r in records:
        if r["config"] == config and r["seed"] == seed and code in (None, r["code"]):
            return r
    return None


def run_grid(configs: list[RunConfig], seeds: list[int], path: str | Path = RESULTS, *, saved_only: bool = False,
             device: str = "auto", precision: str = "auto", progress: bool = True) -> list[dict]:
    """Run every (config, seed) that `path` lacks for the current code and return all their records.

    Each finished run is saved at once, so an interrupted grid resumes where it stopped.
    With `saved_only`, nothing is trained: saved records are returned, older code versions included.
    """
    configs = [make_config(c) for c in configs]
    code, saved = code_version(), load_records(path)
    todo = [(c, s) for c in configs for s in seeds if find_record(saved, c, s, code) is None]
    if saved_only:
        missing = [(config_label(c), s) for c, s in todo if find_record(saved, c, s) is None]
        if missing:
            raise MissingFileError(f"{path} has no record of {len(missing)} run(s), e.g. {missing[:3]}. "
                                    "Run the grid without saved_only (full mode) to train them.")
        if todo:
            warnings.warn(f"{len(todo)} of the {len(configs) * len(seeds)} records in {path} come from another "
                          f"version of the code (now {code}); run the grid in full mode to refresh them.",
                          stacklevel=2)
        return [find_record(saved, c, s, code) or find_record(saved, c, s) for c in configs for s in seeds]
    cache = {}
    bar = tqdm(todo, unit="run", disable=not progress or not todo)
    for config, seed in bar:
        bar.set_description(f"{config_label(config)}, seed {seed}")
        data_settings = tuple(config.settings("data").values())
        if data_settings not in cache:
            cache = {data_settings: load_data(config)}
        save_record(run_one(config, seed, cache[data_settings], device=device, precision=precision), path)
    saved = load_records(path)
    return [find_record(saved, c, s, code) for c in configs for s in seeds]


def records_of(records: list[dict], config: RunConfig) -> list[dict]:
    """The records of one config (all its seeds)."""
    config = make_config(config)
    return [r for r in records if r["config"] == config]


def mean_metric(records: list[dict], metric: str) -> float:
    """The mean of final `metric` over records."""
    return float(np.mean([r["final"][metric] for r in records]))


def mean_by(records: list[dict], key: str, metric: str) -> dict:
    """The mean of final `metric` over the records that share each value of config `key`."""
    groups = {}
    for r in records:
        groups.setdefault(r["config"][key], []).append(r["final"][metric])
    return {value: float(np.mean(v)) for value, v in groups.items()}


def summarize(records: list[dict], ref: RunConfig = PAPER, ref_name: str | None = None) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the final metrics, one row per config, in order.

    The `seeds` column says how many runs (one per seed) each row averages.
    """
    metrics = ["train_acc", "val_acc", "gap", "test_acc", "train_loss", "val_loss"]
    refuse_duplicates(records)
    rows, order = {}, []
    for r in records:
        name = config_label(r["config"], ref, ref_name)
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


def refuse_duplicates(records: list[dict]) -> None:
    """Refuse a list that holds a config's seed twice: its mean would count that run twice."""
    seen = set()
    for r in records:
        run = (make_config(r["config"]), r["seed"])
        if run in seen:
            raise DigitlabError(f"the records hold seed {r['seed']} of {config_label(r['config'])!r} more than once; "
                                "a mean over them would count that run twice. Pass each run once.")
        seen.add(run)


def show_table(table: pd.DataFrame, metrics: tuple[str, ...] = ("train_acc", "val_acc", "gap", "test_acc")):
    """The summary as 'mean ± std' strings (accuracies and gaps in percent), for reading."""
    out = pd.DataFrame({"seeds": table["seeds"]})
    for m in metrics:
        scale, digits = (1, 3) if m.endswith("loss") else (100, 2)
        out[m] = [f"{scale * a:.{digits}f} ± {scale * s:.{digits}f}"
                  for a, s in zip(table[m], table[f"{m}_std"], strict=True)]
    return out


def plot_curves(records: list[dict], metric: str = "val_loss", ref: RunConfig = PAPER, ref_name: str | None = None,
                ax=None):
    """One line per config: `metric` per epoch, the mean over seeds, with each seed faint behind it."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    groups = {}
    for r in records:
        groups.setdefault(config_label(r["config"], ref, ref_name), []).append(r["history"][metric])
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
