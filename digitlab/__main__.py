"""Command line: `digitlab train|evaluate|data` (or `python -m digitlab ...`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from digitlab.errors import DigitlabError, report_user_errors

try:   # the settings are read when digitlab is imported: a bad one is one line too, not a traceback
    import digitlab.settings  # noqa: F401
except DigitlabError as err:
    sys.exit(f"error: {err}")

from digitlab.checkpoints import load, save, train_network
from digitlab.config import OPTIMIZERS, PARTS, PRECISIONS, RECIPES, SCHEDULES, RunConfig
from digitlab.data import load_mnist, mnist_splits
from digitlab.files import check_writable
from digitlab.train import check_seed, evaluate, get_device

CHOICES = {"optimizer": OPTIMIZERS, "schedule": list(SCHEDULES), "precision": ["auto", *PRECISIONS]}
ALIASES = {"num_epochs": ["--epochs"]}   # shorter spellings of a few settings


def add_settings(parser: argparse.ArgumentParser) -> None:
    """One option per RunConfig setting, with its help; an option not given keeps the recipe's value."""
    for f in dataclasses.fields(RunConfig):
        kind = type(f.default) if f.default is not None else int
        names = [f"--{f.name.replace('_', '-')}", *ALIASES.get(f.name, [])]
        recipe_value = ", ".join(f"{name} {getattr(config, f.name)}" for name, config in RECIPES.items())
        options = {"help": f"{f.metadata['help']} (recipes: {recipe_value})", "default": argparse.SUPPRESS,
                   "dest": f.name}
        if kind is bool:
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, **options)
        else:
            parser.add_argument(*names, type=kind, choices=CHOICES.get(f.name), **options)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command and its options (argparse exits with a usage message on a bad one)."""
    parser = argparse.ArgumentParser(prog="digitlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the paper's CNN and save a checkpoint",
                       description="Train the paper's CNN on a recipe's images (MNIST's training split, plus typed "
                                   "digits if it has them), validating on MNIST's fixed validation split, and save "
                                   "a checkpoint. Every setting below changes the recipe's value.")
    t.add_argument("--recipe", default="default", choices=list(RECIPES),
                   help="the settings to start from: default (RunConfig's defaults), course (the course network, "
                        "as course_model() trains it) or course-quick (the quick-mode course network)")
    add_settings(t)
    t.add_argument("--seed", type=int, default=0, help="the seed of the weights, batches and dropout (default 0)")
    t.add_argument("--out", default="models/seed.pt", help="the checkpoint to write (default models/seed.pt)")
    e = sub.add_parser("evaluate", help="print a checkpoint's test accuracy")
    e.add_argument("checkpoint", help="a checkpoint written by `digitlab train` or digitlab.save")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    sub.add_parser("data", help="make sure MNIST is present and verified (downloads it if needed)")
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The recipe changed by the settings given on the command line."""
    given = {name: getattr(args, name) for name in RunConfig.names(*PARTS) if name in args}
    return RECIPES[args.recipe].replace(**given)


def train(args: argparse.Namespace) -> int:
    """Train and save a checkpoint; settings and `--out` are checked before any data is loaded."""
    config = run_config(args)
    check_seed(args.seed)
    device = get_device(config.device)
    check_writable(args.out)
    n_images = (config.n_train or 55_000) + config.typed_digits
    print(f"Training on {n_images:,} images for {config.num_epochs} epoch(s) on {device} ({args.recipe} recipe)")
    start = time.perf_counter()
    net, history = train_network(config, args.seed)
    for i, epoch in enumerate(history["epoch"]):
        print(f"epoch {epoch}: train loss {history['train_loss'][i]:.4f}, "
              f"val accuracy {history['val_acc'][i]:.4f}, {history['seconds'][i]:.1f} s")
    run = history["run"]
    print(f"Training took {time.perf_counter() - start:.1f} s on {run['device']} in {run['precision']} "
          f"({run['cpu']}, {run['cpu_capability']}, {run['threads']} threads, torch {run['torch']})")
    save(net, args.out, history=history, config=dict(config), seed=args.seed)
    print(f"Saved {args.out}; test it with `digitlab evaluate {args.out}`")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the parsed command."""
    if args.command == "data":
        for split in ("train", "test"):
            X, _ = load_mnist(split)
            print(f"MNIST {split}: {len(X):,} images, verified")
    elif args.command == "train":
        return train(args)
    else:
        net, meta = load(args.checkpoint, device=str(get_device(args.device)))
        info = meta.get("history", {}).get("run")
        if info:
            print(f"trained on {info['device']} in {info['precision']} ({info['cpu']}, {info['cpu_capability']}, "
                  f"torch {info['torch']})")
        data = mnist_splits()
        loss, acc = evaluate(net, *data["test"])
        print(f"test accuracy {acc:.4f} ({acc * 100:.2f}%), test loss {loss:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command; a user error prints one line, `error: ...`, and returns 2 (1 for an OSError, 130 for Ctrl-C);
    bugs raise."""
    args = parse(argv)
    return report_user_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
