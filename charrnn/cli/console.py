"""The one rich Console (on stderr) and the ways the commands speak through it.

Generated text alone goes to stdout (`write_stdout`); every message for people
goes to stderr. A CharrnnError, an OSError or a closed pipe becomes one line
and an exit status, never a traceback (`user_errors`).
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager

import click
from rich.console import Console
from rich.markup import escape

from charrnn.errors import CharrnnError, EveryRankError

console = Console(stderr=True, highlight=False)
RANK = 0  # under torchrun, this process's rank: only rank 0 speaks, the others say errors

EXIT_SIGINT, EXIT_SIGTERM = 130, 143


def info(message: str) -> None:
    console.print(message, soft_wrap=True)


def warn(message: str) -> None:
    info(f"[yellow]warning:[/] {message}")


class UserError(click.ClickException):
    """A one-line `error: ...` on stderr through the Console, exit status 1."""

    def show(self, file=None) -> None:
        show_error(self.message)


def show_error(message: str) -> None:
    where = f"rank {RANK}: " if RANK else ""
    quiet, console.quiet = console.quiet, False  # errors are said on every rank
    try:
        console.print(f"[bold red]error:[/] {where}{escape(message)}", soft_wrap=True)
    finally:
        console.quiet = quiet


def speak_as_rank(rank: int) -> None:
    """Under torchrun, ranks other than 0 print nothing but their errors."""
    global RANK
    RANK = rank
    console.quiet = rank != 0


@contextmanager
def user_errors():
    """Library errors become one-line messages; nothing a user caused shows a traceback."""
    try:
        yield
    except EveryRankError as e:
        if RANK:  # rank 0 says it for every rank
            sys.exit(1)
        raise UserError(str(e)) from None
    except CharrnnError as e:
        raise UserError(str(e)) from None
    except BrokenPipeError:  # stdout's reader went away (`| head`) mid-table or mid-JSON
        exit_for_closed_stdout()
    except OSError as e:  # the machine's fault, not ours: a full disk, a vanished folder
        from charrnn.files import describe_os_error

        where = f"{e.filename}: " if e.filename else ""
        raise UserError(f"{where}{describe_os_error(e)}") from None
    except KeyboardInterrupt:
        console.print("[yellow]aborted[/]")
        sys.exit(EXIT_SIGINT)


def write_stdout(text: str) -> None:
    """Write and flush, so a pipe or terminal sees each character as it is made.

    A reader that goes away (`| head`), or a stdout closed before we started (`>&-`),
    ends the program quietly (see `user_errors`).
    """
    if sys.stdout is None:
        raise BrokenPipeError("stdout is closed")
    sys.stdout.write(text)
    sys.stdout.flush()


def exit_for_closed_stdout() -> None:
    """End quietly with status 0: a reader that stops early is not an error."""
    import os

    if sys.stdout is not None:
        # point stdout at /dev/null, so Python's exit-time flush does not complain
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def print_json(data) -> None:
    """JSON on stdout, flushed here so a reader that is gone is seen inside `user_errors`
    (not at exit, where Python would print a BrokenPipeError and exit 120)."""
    import json

    write_stdout(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


# ------------------------------------------------------------------ numbers for people


def loss_unit(vocab) -> str:
    """Losses are per id: per character for char models, per byte or piece otherwise."""
    return vocab.unit


def format_loss(loss: float, unit: str = "char", sep: str = ", ") -> str:
    """ "1.2345 nats/char, 1.781 bits/char" (bits only where the unit is fixed)."""
    text = f"{loss:.4f} nats/{unit}"
    if unit != "token":
        text += f"{sep}{loss / math.log(2):.3f} bits/{unit}"
    return text


def count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def plural(n: int, noun: str) -> str:
    """`1 thread`, `2 threads`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
