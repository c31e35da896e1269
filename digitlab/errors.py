"""The errors a user can cause; the command line prints their message alone, without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class DigitlabError(ValueError):
    """Bad input, a bad setting, or a missing, unreadable or foreign file: the message says what to do."""


class MissingFileError(DigitlabError, FileNotFoundError):
    """A file that digitlab needs is not there."""


class WrongTypeError(DigitlabError, TypeError):
    """An argument of the wrong type or dtype."""


class DivergedError(DigitlabError, FloatingPointError):
    """Training diverged: the loss became NaN or infinite, or exploded, or nothing was learnt."""


class NoDigitError(DigitlabError):
    """A picture holds no digit (blank, a speck, noise) or more than one."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped (Ctrl-C) before its last epoch, so its network is not the one asked for."""


def report_user_errors(command: Callable[[], int | None]) -> int:
    """Run a command-line command: a user error prints `error: ...` and gives 2 (1 for an OSError); bugs raise."""
    try:
        return command() or 0
    except DigitlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine's, not the code's: a full disk, a folder one may not write
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"Interrupted: {err or 'nothing saved.'}", file=sys.stderr)
        return 130
