"""The errors a user can cause; the command line prints their message alone, without a traceback."""


class DigitlabError(ValueError):
    """Bad input, a bad setting, or a missing, unreadable or foreign file: the message says what to do."""


class MissingFileError(DigitlabError, FileNotFoundError):
    """A file that digitlab needs is not there."""


class WrongTypeError(DigitlabError, TypeError):
    """An argument of the wrong type or dtype."""


class DivergedError(DigitlabError, FloatingPointError):
    """Training diverged: the loss became NaN or infinite, or exploded, or nothing was learnt."""
