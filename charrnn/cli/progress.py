"""Progress people can watch: reading and encoding a corpus, and training.

Both draw on the one Console (stderr). TrainProgress is a training callback
(see charrnn.train.loop.Callback): a bar with the loss, speed and time left, and
one line per evaluation.
"""

from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from charrnn.cli.console import console, format_loss, loss_unit, plural
from charrnn.options import format_duration
from charrnn.train.callbacks import Callback

PROBING = "probing"  # the phase charrnn.runs.probe reports, in milliseconds


class EncodeProgress:
    """A transient progress bar for reading and encoding the corpus, and for the plan's
    probe of the machine (shown after 1 s)."""

    def __init__(self):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[mb]}"),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, int] = {}
        self.started = None

    def __enter__(self):
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        if self.progress.live.is_started:
            self.progress.stop()

    def update(self, phase: str, done: int, total: int) -> None:
        if not self.progress.live.is_started:
            if time.monotonic() - self.started < 1.0:
                return  # small corpora: no bar flashing by
            self.progress.start()
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(phase, total=max(total, 1), mb="")
        # the probe counts milliseconds of its allowance; the corpus phases count bytes
        shown = f"{done / 1e3:.1f} s" if phase == PROBING else f"{done / 1e6:,.0f} MB"
        self.progress.update(self.tasks[phase], completed=done, mb=shown)


class TrainProgress(Callback):
    """A training callback: a rich progress bar and a line per evaluation."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.val = "-"
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("step {task.fields[step]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[speed]} chars/s"),
            TextColumn("{task.fields[left]} left"),
            console=console,
            transient=False,
        )
        self.task = None

    def __enter__(self):
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=1000,
            step=f"{self.trainer.step:,}",
            loss="-",
            val=self.val,
            speed="-",
            left="-",
        )
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self.trainer.stop_requested:
            self.progress.update(self.task, completed=1000, left="0s")  # the final evaluation
        self.progress.stop()

    def on_start(self, trainer) -> None:
        n = trainer.model.num_parameters()
        where = f"{trainer.device}, {trainer.precision}"
        if trainer.device.type == "cpu":
            where += f", {plural(trainer.threads, 'thread')}"
        self.progress.console.print(f"params  {n:,} on {where}", soft_wrap=True)

    def on_step(self, s) -> None:
        left = "-"
        if s.progress > 0:
            cfg = self.trainer.config
            if cfg.time_budget and s.elapsed / cfg.time_budget >= s.progress - 1e-9:
                left = format_duration(cfg.time_budget - s.elapsed)
            else:
                left = format_duration(s.elapsed * (1 - s.progress) / s.progress)
        self.progress.update(
            self.task,
            completed=1000 * s.progress,
            step=f"{s.step:,}",
            loss="-" if s.train_loss is None else f"{s.train_loss:.3f}",
            val=self.val,
            speed=f"{s.chars_per_s:,.0f}",
            left=left,
        )

    def on_log(self, record: dict) -> None:
        if record["event"] == "threads":  # the tuner settled on another count
            self.progress.console.print(
                f"step {record['step']:>7,}  now on {plural(record['threads'], 'thread')}: "
                "its steps measured quicker here",
                soft_wrap=True,
            )

    def on_eval(self, e) -> None:
        self.val = f"{e.val_loss:.3f}"
        self.progress.update(self.task, val=self.val)
        mark = "  [green]best[/]" if e.is_best else ""
        loss = format_loss(e.val_loss, loss_unit(self.trainer.corpus.vocab), "  ")
        self.progress.console.print(
            f"step {e.step:>7,}  val {loss}  ({e.seconds:.1f}s){mark}",
            soft_wrap=True,
        )
