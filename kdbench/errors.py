"""Errors kdbench reports to users, and how a full disk is recognised.

Every :class:`KdbenchError` is a mistake in the user's input (a grid file, a name, a
dataset on disk) or a failure kdbench can name (a full disk, a job that failed); the
CLI prints it as one line and exits with its ``exit_code`` — 2 for bad input, 1 for a
failure — never with a traceback.
"""


import errno
import os
import re

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
# Writers that lose the errno when the disk fills under them: torch.save's zip writer, and
# numpy's file writes (``6144 requested and 3968 written``).
_SHORT_WRITES = re.compile(r"unexpected pos|PytorchStreamWriter failed writing|\d+ requested and \d+ written")


def full_disk_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means the disk is full (``ENOSPC``/``EDQUOT``, or a writer's short write), else ``None``."""
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        return exc.strerror or os.strerror(exc.errno)
    if isinstance(exc, (OSError, RuntimeError)) and _SHORT_WRITES.search(str(exc)):
        return "the write stopped short (" + " ".join(str(exc).split()) + ")"
    return None


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


class CheckpointError(KdbenchError):
    """A saved network that cannot be loaded: a corrupt file, or one that ``weights_only`` refuses."""


class KdbenchNote(UserWarning):
    """A one-time note for the user (e.g. a method that degenerates on binary labels).

    Raised with :func:`warnings.warn`; ``kdbench run`` prints each distinct note once.
    """
