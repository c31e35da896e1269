"""Command line: `python -m digitlab train|evaluate|data`."""

from __future__ import annotations

import argparse
import sys
import time

from digitlab.errors import DigitlabError, report_user_errors

try:   # the settings are read when digitlab is imported: a bad one is one line too, not a traceback
    import digitlab.settings  # noqa: F401
except DigitlabError as err:
    sys.exit(f"error: {err}")

from digitlab.checkpoints import load, save
from digitlab.config import SCHEDULES, RunConfig
from digitlab.data import load_mnist, mnist_splits
from digitlab.files import check_writable
from digitlab.models import DigitRecognitionCNN
from digitlab.train import PRECISIONS, evaluate, fit, get_device, set_seed


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command and its options (argparse exits with a usage message on a bad one)."""
    parser = argparse.ArgumentParser(prog="python -m digitlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the paper's CNN on MNIST and save a checkpoint")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--schedule", default="onecycle", choices=list(SCHEDULES))
    t.add_argument("--n-train", type=int, default=None, help="train on a stratified subset of this size")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS],
                   help="auto: bfloat16 on CPUs with bf16 units, else float32 (or $DIGITLAB_PRECISION)")
    t.add_argument("--out", default="models/seed.pt")
    e = sub.add_parser("evaluate", help="print a checkpoint's test accuracy")
    e.add_argument("checkpoint")
    e.add_argument("--device", default="auto")
    sub.add_parser("data", help="make sure MNIST is present and verified (downloads it if needed)")
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> int:
    """Train and save a checkpoint; settings and `--out` are checked before any data is loaded."""
    config = RunConfig(n_train=args.n_train, num_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       schedule=args.schedule)
    if not 0 <= args.seed < 2**32:
        raise DigitlabError(f"--seed must be a whole number from 0 to {2**32 - 1}, not {args.seed}.")
    device = get_device(args.device)
    check_writable(args.out)
    set_seed(args.seed)
    data = mnist_splits(n_train=config.n_train)
    net = DigitRecognitionCNN(**config.settings("model"))
    print(f"Training on {len(data['train'][1]):,} images for {config.num_epochs} epoch(s) on {device}")
    start = time.perf_counter()
    history = fit(net, data["train"], data["val"], seed=args.seed, device=args.device, precision=args.precision,
                  **config.settings("fit"))
    for i, epoch in enumerate(history["epoch"]):
        print(f"epoch {epoch}: train loss {history['train_loss'][i]:.4f}, "
              f"val accuracy {history['val_acc'][i]:.4f}, {history['seconds'][i]:.1f} s")
    run = history["run"]
    print(f"Training took {time.perf_counter() - start:.1f} s on {run['device']} in {run['precision']} "
          f"({run['cpu']}, {run['cpu_capability']}, {run['threads']} threads, torch {run['torch']})")
    if len(history["epoch"]) < args.epochs:
        print(f"Interrupted after {len(history['epoch'])} of {args.epochs} epoch(s): nothing saved, "
              f"{args.out} is unchanged.", file=sys.stderr)
        return 130
    save(net, args.out, history=history, args=vars(args))
    print(f"Saved {args.out}; test it with `python -m digitlab evaluate {args.out}`")
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
    """Run a command; a user error prints one line, `error: ...`, and returns 2 (1 for an OSError); bugs raise."""
    args = parse(argv)
    return report_user_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
