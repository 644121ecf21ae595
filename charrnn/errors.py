"""The one exception type the library raises for problems a user can fix.

The CLI turns a `CharrnnError` into a one-line message and a non-zero exit;
anything else that escapes is a bug and keeps its traceback.
"""

from contextlib import contextmanager


class CharrnnError(Exception):
    """A problem with the user's input: a file, an option, a checkpoint."""


class EveryRankError(CharrnnError):
    """Under torchrun, an error every rank reaches the same way: rank 0 alone says it."""


class CorpusError(CharrnnError):
    """The corpus cannot be read, decoded or batched."""


class CheckpointError(CharrnnError):
    """A checkpoint is missing, damaged or not ours."""


class UnknownCharactersError(CharrnnError):
    """Text holds characters outside the model's vocabulary."""

    def __init__(self, unknown: list[str], what: str = "the seed"):
        self.unknown = unknown
        shown = ", ".join(repr(c) for c in unknown[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        super().__init__(
            f"{what} has {len(unknown)} character(s) the model never saw: {shown}{more}"
        )


class WriteError(CharrnnError, OSError):
    """A file could not be written: a full disk, a size limit, a read-only folder.

    It is still an OSError, so code that falls back when a cache is unwritable
    keeps working."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class RunInUseError(CharrnnError):
    """Another process is training into the same run folder."""


@contextmanager
def said_by_rank_0():
    """Refusals that follow from what every rank read alike (the plan, the corpus, the
    checkpoint) come out the same on every rank: under torchrun rank 0 says them once.
    Only checks of shared data belong here, never of this machine."""
    try:
        yield
    except EveryRankError:
        raise
    except CharrnnError as e:
        raise EveryRankError(str(e)) from None
