"""Training benchmark: how fast the paper's network trains on this machine, and how few epochs it needs.

`python -m digitlab.bench` (or `make bench`) measures on this machine, one part after the other:
- `speed`: the reference pipeline's and digitlab's images/s, their ratio, the share of the machine's own
  float32 matrix-multiply rate each reaches, and what the dropout masks cost a training step;
- `one_epoch`, `short`, `best`: each recipe of RECIPES trained with 3 seeds, its mean test accuracy judged against
  TARGETS (99.0% after 1 epoch, 99.5% within 8 epochs, 99.6% within 30 epochs).
It writes benchmarks/RESULTS.md and RESULTS.json after every part, so `--parts` can measure some parts now and the
rest later (or after an interruption); parts measured on another machine are dropped.
`python -m digitlab.bench --smoke` runs a tiny version in seconds (what CI runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

from digitlab.config import RunConfig
from digitlab.data import mnist_splits
from digitlab.errors import DigitlabError, report_user_errors
from digitlab.files import write_text
from digitlab.measure import PEAK_ROUNDS, machine, multiply_adds, peak_gflops, peak_share, run_record
from digitlab.models import DigitRecognitionCNN
from digitlab.settings import BENCHMARKS_DIR, PROJECT_DIR
from digitlab.speed import digitlab_images_per_second, reference_loader, reference_train
from digitlab.train import (
    choose_precision,
    evaluate,
    fit,
    get_device,
    set_seed,
)

RESULTS = BENCHMARKS_DIR / "RESULTS.md"
RESULTS_JSON = BENCHMARKS_DIR / "RESULTS.json"  # the same results, for reading back (`load_results`)
SEEDS = (0, 1, 2)
PARTS = ("speed", "one_epoch", "short", "best")
# The epoch targets: the mean test accuracy of SEEDS that each recipe must reach. The recipes train the paper's
# network, unchanged, with `fit` and the one-cycle schedule (benchmarks/README.md says how they were chosen).
TARGETS = {"one_epoch": 0.990, "short": 0.995, "best": 0.996}
RECIPES = {
    "one_epoch": RunConfig(num_epochs=1, batch_size=32, lr=6e-3, augment=True, label_smoothing=0.1),
    "short": RunConfig(num_epochs=8, batch_size=64, lr=6e-3, augment=True, label_smoothing=0.1),
    "best": RunConfig(num_epochs=30, batch_size=64, lr=6e-3, augment=True, label_smoothing=0.1),
}
DEFAULT_EPOCH = RunConfig(num_epochs=1, batch_size=64, schedule="none")  # fit's defaults, against the reference
# A training step costs about 3 forward passes per image (the backward pass about twice the forward), each 2 FLOP
# per multiply-add.
TRAIN_FLOP_PER_MULTIPLY_ADD = 3 * 2


def setup() -> dict[str, str]:
    """This machine (`measure.machine()`), the training device and fit's default precision on it."""
    device = get_device()
    return {**machine(), **{k: str(v) for k, v in run_record(device, choose_precision("auto", device)).items()}}


def train_runs(data: dict, recipe: RunConfig, seeds=SEEDS) -> list[dict[str, float]]:
    """Train the paper's network with `recipe`'s model and fit settings on `data` once per seed; training seconds
    and test accuracy of each."""
    runs = []
    for seed in seeds:
        set_seed(seed)
        net = DigitRecognitionCNN(**recipe.settings("model"))
        history = fit(net, data["train"], None, recipe, seed=seed, progress=False)
        runs.append({"seed": seed, "seconds": sum(history["seconds"]),
                     "test_acc": evaluate(net, *data["test"])[1]})
    return runs


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and (sample) standard deviation; 0 spread for a single value."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def measure_speed(data: dict, smoke: bool = False) -> dict:
    """The `speed` part: images/s of the reference and of digitlab (with and without dropout), the peak, one epoch
    of each path."""
    loader = reference_loader(n_train=len(data["train"][1]))
    _, reference_ips = reference_train(loader, num_batches=5 if smoke else 200)
    X, y = data["train"][0][:12_800], data["train"][1][:12_800]
    best = {"digitlab_ips": 0.0, "no_dropout_ips": 0.0}
    for _ in range(1 if smoke else 2):  # the two take turns; each keeps its fastest
        best["digitlab_ips"] = max(best["digitlab_ips"], digitlab_images_per_second(X, y))
        best["no_dropout_ips"] = max(best["no_dropout_ips"],
                                     digitlab_images_per_second(X, y, dropout1=0.0, dropout2=0.0))
    start = time.perf_counter()
    net, _ = reference_train(loader, warmup=0)
    reference_epoch = {"seconds": time.perf_counter() - start, "test_acc": evaluate(net, *data["test"])[1]}
    return {"reference_ips": reference_ips, **best, "speedup": best["digitlab_ips"] / reference_ips,
            "peak_gflops": peak_gflops(repeats=3 if smoke else 20),
            "flop_per_image": TRAIN_FLOP_PER_MULTIPLY_ADD * multiply_adds(DigitRecognitionCNN()),
            "reference_epoch": reference_epoch, "digitlab_epoch": train_runs(data, DEFAULT_EPOCH, [0])[0]}


def measure(part: str, smoke: bool = False) -> dict:
    """Measure one part of PARTS; `smoke` shrinks it to a few seconds on 1,024 images."""
    data = mnist_splits(n_train=1024 if smoke else None)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "n_train": len(data["train"][1])}
    if part == "speed":
        return {**result, **measure_speed(data, smoke)}
    recipe = dataclasses.replace(RECIPES[part], num_epochs=1) if smoke else RECIPES[part]
    return {**result, "recipe": dict(recipe), "runs": train_runs(data, recipe, SEEDS[:1] if smoke else SEEDS)}


def targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """Each epoch target, what was measured, and whether it holds (None: not measured yet)."""
    rows = []
    for part, target in TARGETS.items():
        epochs = RECIPES[part].num_epochs
        name = f"at least {target:.1%} test accuracy (mean of {len(SEEDS)} seeds) " + (
            "after 1 epoch" if epochs == 1 else f"within {epochs} epochs")
        measured = results["parts"].get(part)
        if measured is None:
            rows.append((name, f"not measured yet: `python -m digitlab.bench --parts {part}`", None))
            continue
        mean, sd = spread([r["test_acc"] for r in measured["runs"]])
        rows.append((name, f"{mean:.2%} ± {sd:.2%} after {measured['recipe']['num_epochs']} epoch(s)",
                     mean >= target and len(measured["runs"]) == len(SEEDS)))
    return rows


def runs_table(runs: list[dict]) -> list[str]:
    """Markdown rows: one per seed, then mean and standard deviation."""
    mean_s, sd_s = spread([r["seconds"] for r in runs])
    mean_acc, sd_acc = spread([r["test_acc"] for r in runs])
    return (["| seed | training s | test accuracy |", "|---:|---:|---:|"]
            + [f"| {r['seed']} | {r['seconds']:.1f} | {r['test_acc']:.2%} |" for r in runs]
            + [f"| **mean ± sd** | **{mean_s:.1f} ± {sd_s:.1f}** | **{mean_acc:.2%} ± {sd_acc:.2%}** |", ""])


def speed_report(s: dict, threads: str) -> list[str]:
    """The `speed` part as Markdown."""
    flop, gflops = s["flop_per_image"], s["peak_gflops"]
    masks = 1 - s["digitlab_ips"] / s["no_dropout_ips"]
    ref, own = s["reference_epoch"], s["digitlab_epoch"]
    return ["## Images per second, the paper's network (DigitRecognitionCNN, 421,834 parameters)", "",
            f"Measured {s['date']}.", "",
            "| training path | images/s | share of the peak |", "|---|---:|---:|",
            f"| reference: Dataset of PIL images + ToTensor + Normalize, DataLoader batch 64, NCHW float32, "
            f"Adadelta | {s['reference_ips']:,.0f} | {peak_share(s['reference_ips'], flop, gflops):.1%} |",
            f"| digitlab `fit` default: in-memory tensors batched by index, channels-last, batch 64 "
            f"| {s['digitlab_ips']:,.0f} | {peak_share(s['digitlab_ips'], flop, gflops):.1%} |",
            f"| the same without the dropout masks (not the paper's network: for comparison only) "
            f"| {s['no_dropout_ips']:,.0f} | {peak_share(s['no_dropout_ips'], flop, gflops):.1%} |",
            f"| **digitlab / reference** | **{s['speedup']:.2f}x** | |", "",
            f"The peak: a training step does about {flop:,} FLOP per image ({TRAIN_FLOP_PER_MULTIPLY_ADD} per "
            f"multiply-add: the forward pass and a backward pass twice its cost), and this machine multiplies "
            f"float32 matrices at {gflops:.0f} GFLOP/s with {threads} threads (the best of {PEAK_ROUNDS} "
            f"measurements). Drawing the two dropout masks takes {masks:.0%} of digitlab's training step here "
            "(the two rows took turns; each kept its fastest).", "",
            f"One whole epoch ({s['n_train']:,} images), seed 0:", "",
            "| | training s | test accuracy |", "|---|---:|---:|",
            f"| reference (Adadelta lr 1.0, batch 64) | {ref['seconds']:.1f} | {ref['test_acc']:.2%} |",
            f"| digitlab `fit` (Adam lr 1e-3, no schedule, batch 64) | {own['seconds']:.1f} "
            f"| {own['test_acc']:.2%} |", ""]


def report(results: dict) -> str:
    """The results as a Markdown document: machine, each measured part with its date, and the targets."""
    m, parts = results["machine"], results["parts"]
    lines = ["# Training benchmark", ""]
    if results["smoke"]:
        lines += ["**Smoke run: a check that the benchmark works, on tiny data. Not a measurement.**", ""]
    lines += [f"Measured by `python -m digitlab.bench{' --smoke' if results['smoke'] else ''}` on {m['cpu']}, "
              f"{m['cores']} cores ({m['threads']} PyTorch threads, CPU capability {m['cpu_capability']}), "
              f"torch {m['torch']}, Python {m['python']}; training device: {m['device']}, precision "
              f"{m['precision']} (fit's default on this machine). Test accuracy is on MNIST's 10,000 test "
              "images; the networks train on MNIST's training images but the 5,000 of the validation set.", ""]
    if "speed" in parts:
        lines += speed_report(parts["speed"], m["threads"])
    for part in TARGETS:
        if part in parts:
            recipe = {k: v for k, v in parts[part]["recipe"].items() if k in RunConfig().settings("fit")}
            lines += [f"## Recipe `{part}`", "", f"Measured {parts[part]['date']} on {parts[part]['n_train']:,} "
                      f"training images. `fit` settings: `{recipe}`.", ""] + runs_table(parts[part]["runs"])
    lines += ["## Targets", "", targets_table(results)]
    return "\n".join(lines) + "\n"


def targets_table(results: dict) -> str:
    """Markdown table of the targets, what was measured and whether each holds."""
    verdict = {True: "yes", False: "**no**", None: "not measured"}
    lines = ["| target | measured | holds |", "|---|---|---|"]
    lines += [f"| {name} | {measured} | {verdict[ok]} |" for name, measured, ok in targets(results)]
    return "\n".join(lines)


def write_results(results: dict, out: Path = RESULTS) -> None:
    """Write the report to `out` and the results themselves beside it as JSON (`load_results` reads them)."""
    write_text(out, report(results))
    write_text(out.with_suffix(".json"), json.dumps(results, indent=1) + "\n")


def load_results(path: Path = RESULTS_JSON) -> dict:
    """The results a benchmark run saved with `write_results`."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DigitlabError(f"cannot read the benchmark results {path}: {err}. Run `python -m digitlab.bench` "
                            "to measure them again.") from None
    if not isinstance(results, dict) or not {"machine", "smoke", "parts"} <= results.keys():
        raise DigitlabError(f"{path} is not a results file of this version of `python -m digitlab.bench`; run it "
                            "again to measure them.")
    return results


def earlier_results(out: Path, machine: dict, smoke: bool) -> dict:
    """The parts already measured in `out`'s JSON on `machine` (`setup()`), kept when `--parts` measures others."""
    path = out.with_suffix(".json")
    if not path.exists():
        return {}
    try:
        results = load_results(path)
    except DigitlabError as err:
        print(f"Starting afresh: {err}")
        return {}
    if results["machine"] != machine or results["smoke"] != smoke:
        print(f"Starting afresh: {path} was measured on another machine or in another mode.")
        return {}
    return results["parts"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m digitlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run in seconds, to check that it works")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="measure only these parts; the others are kept from the results file if they were "
                             "measured on this machine (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write the Markdown results (default {RESULTS.relative_to(PROJECT_DIR)}; "
                             "--smoke writes only when given --out)")
    args = parser.parse_args(argv)
    out = args.out or (None if args.smoke else RESULTS)
    this = setup()
    results = {"machine": this, "smoke": args.smoke,
               "parts": earlier_results(out, this, args.smoke) if out is not None else {}}
    for part in PARTS:
        if part in args.parts:
            print(f"Measuring {part} ...", flush=True)
            results["parts"][part] = measure(part, smoke=args.smoke)
            if out is not None:  # after every part, so that an interrupted run keeps what it measured
                write_results(results, out)
    print(report(results))
    if out is not None:
        print(f"Wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    sys.exit(report_user_errors(main))
