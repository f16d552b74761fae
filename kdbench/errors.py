"""Errors kdbench reports to users.

Every :class:`KdbenchError` is a mistake in the user's input (a grid file, a name, a
dataset on disk) or a failure kdbench can name (a full disk, a job that failed); the
CLI prints it as one line and exits with its ``exit_code`` — 2 for bad input, 1 for a
failure — never with a traceback.
"""


class KdbenchError(Exception):
    """An error whose message is complete in one line and meant for the user (exit 2: bad input)."""

    exit_code = 2


class RunFailure(KdbenchError):
    """Something failed that the input did not cause: a full disk, a diverged training (exit 1)."""

    exit_code = 1


class ConfigError(KdbenchError):
    """A grid file or a ``--set`` override is invalid."""


class UnknownNameError(KdbenchError):
    """A name that no registry knows."""


class DatasetError(KdbenchError):
    """A dataset on disk is missing, malformed or inconsistent."""


class MissingRootError(DatasetError):
    """A file dataset was given no ``root``, or a ``root`` that does not exist.

    The planner collects every missing dataset of a grid into one message: what is
    missing, where to get it, how to point kdbench at it, and the phantom command.
    """


class KdbenchNote(UserWarning):
    """A one-time note for the user (e.g. a method that degenerates on binary labels).

    Raised with :func:`warnings.warn`; ``kdbench run`` prints each distinct note once.
    """
