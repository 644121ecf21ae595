"""Continuous batching: every stream of every request steps together, one batch per model.

One worker thread owns the models and the batches; nothing else touches torch. A
request (`Job`) goes into a bounded queue (`Engine.submit`, or `Overloaded` at once).
At each step the worker lets in the queued jobs the batch has room for (their
prompts are read, then their rows are added to the batch), draws one id for every
row, and drops the rows that finished or whose job was cancelled. An RNN's state is
a fixed-size row per stream, so joining and leaving are a concatenation and an
index: there is no cache to page.

Text leaves the worker through `notify(updates)`, called every 20 to 100 ms (and at
once for a stream's first text or its end), so a server's event loop wakes a few dozen
times a second and sends about 200 chunks a second, however many streams run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from charrnn.errors import CharrnnError
from charrnn.serve.batch import ModelBatch
from charrnn.serve.config import ServeConfig
from charrnn.serve.jobs import Job, Update
from charrnn.serve.models import ModelSource, ServedModel, load_model

MIN_FLUSH_INTERVAL = 0.02  # seconds
FLUSH_PER_STREAM = 0.005


class Overloaded(CharrnnError):
    """The queue is full: the request is refused now, not buffered."""


class Stopping(CharrnnError):
    """The server is stopping (or its worker has ended): no new work."""


@dataclass
class Stats:
    """What /metrics reports; the worker writes, any thread reads."""

    running_streams: int = 0
    queued_streams: int = 0
    characters: int = 0
    steps: int = 0
    requests: int = 0
    refused: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self._lock = threading.Lock()

    def refuse(self, reason: str) -> None:
        with self._lock:  # the event loop and the worker both count refusals
            self.refused[reason] += 1


class Engine:
    def __init__(
        self,
        sources: list[ModelSource],
        device,
        config: ServeConfig,
        notify: Callable[[list[Update]], None],
    ):
        self.sources = sources
        self.device = device
        self.config = config
        self.notify = notify
        self.stats = Stats()
        self.models: dict[str, ServedModel] = {}
        self.ready = threading.Event()
        self.failure: str | None = None  # why loading failed
        self._batches: dict[str, ModelBatch] = {}
        self._pending: deque[Job] = deque()
        self._waiting = 0  # pending jobs that took a queue place (did not fit at once)
        self._lock = threading.Condition()
        self._stopping = False
        self._outbox: list[Update] = []  # updates not from a batch: errors, the stop
        self._urgent = False
        self._last_flush = 0.0
        self._thread = threading.Thread(target=self._run, name="charrnn-engine", daemon=True)

    # ------------------------------------------------------------------ any thread

    def start(self) -> Engine:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job, or raise Overloaded when neither the batch nor the queue has room
        (or Stopping, once the server is stopping)."""
        with self._lock:
            if self._stopping or not self._thread.is_alive():
                raise Stopping("the server is stopping")
            queued = self.stats.queued_streams
            fits = self.stats.running_streams + queued + job.streams <= self.config.max_streams
            if not fits and self._waiting >= self.config.max_queue:
                self.stats.refuse("queue_full")
                raise Overloaded(
                    f"the server is busy: {self.stats.running_streams} streams are running "
                    f"and {len(self._pending)} requests wait; try again shortly"
                )
            job.took_queue_place = not fits
            self._waiting += not fits
            self._pending.append(job)
            self.stats.queued_streams += job.streams
            self.stats.requests += 1
            self._lock.notify_all()

    def cancel(self, job: Job) -> None:
        """The client is gone: its rows leave at the next step; if it waits, it never
        starts, and its place in the queue is free at once."""
        job.cancelled = True
        with self._lock:
            if job in self._pending:
                self._pending.remove(job)
                self._unqueue(job)
                self.stats.refuse("client_gone")
            self._lock.notify_all()

    def _unqueue(self, job: Job) -> None:
        """The counts, once a job leaves the queue (lock held)."""
        self.stats.queued_streams -= job.streams
        self._waiting -= job.took_queue_place

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        import torch

        try:
            with torch.inference_mode():
                for source in self.sources:
                    self.models[source.id] = load_model(source, self.device)
                    self._batches[source.id] = ModelBatch(self.models[source.id])
        except Exception as e:  # noqa: BLE001 - said in one line by whoever started us
            self.failure = str(e) or type(e).__name__
            return
        finally:
            self.ready.set()
        try:
            with torch.inference_mode():
                while self._next_round():
                    self._step_all()
        finally:  # also if the worker itself fails: no client may wait for ever
            with self._lock:
                self._stopping = True
            self._end_all("the server is stopping")

    def _next_round(self) -> bool:
        """Wait until there is work; let in the jobs that fit. False when stopping."""
        with self._lock:
            while not self._stopping and not self._pending and not self.stats.running_streams:
                self._flush(force=True)
                self._lock.wait(timeout=1.0)
            if self._stopping:
                return False
            joining = self._admissible()
        for job in joining:
            try:
                self._batches[job.model].join(job)
                job.started = True
            except Exception as e:  # noqa: BLE001 - one bad request must not stop the server
                self._post([Update(job, i, "", "error", str(e)) for i in range(job.streams)])
        with self._lock:
            self.stats.running_streams = sum(len(b.rows) for b in self._batches.values())
        return True

    def _admissible(self) -> list[Job]:
        """Pop the queued jobs, oldest first, while the batch has room (lock held)."""
        room = self.config.max_streams - self.stats.running_streams
        joining = []
        while self._pending and self._pending[0].streams <= room:
            job = self._pending.popleft()
            self._unqueue(job)
            room -= job.streams
            # counted as running from here, so `submit` sees the room they take while
            # their prompts are read
            self.stats.running_streams += job.streams
            joining.append(job)
        return joining

    def _step_all(self) -> None:
        for batch in self._batches.values():
            if not batch.rows:
                continue
            try:
                self._urgent |= batch.step()
            except Exception as e:  # noqa: BLE001 - fail this batch's jobs, keep serving
                self._outbox += batch.fail(f"generation failed: {e}")
                self._urgent = True
            self.stats.steps += 1
        with self._lock:
            self.stats.running_streams = sum(len(b.rows) for b in self._batches.values())
        self._flush()

    def _post(self, updates: list[Update]) -> None:
        self._outbox += updates
        self._urgent = True

    def _flush(self, force: bool = False) -> None:
        """Hand the new text to `notify`: at once when a client waits for its first text
        or its end, else once per flush interval."""
        now = time.monotonic()
        if not (force or self._urgent or now - self._last_flush >= self._flush_interval()):
            return
        updates, self._outbox = self._outbox, []
        for batch in self._batches.values():
            updates += batch.collect()
        self._urgent, self._last_flush = False, now
        if updates:
            self.stats.characters += sum(len(u.text) for u in updates)
            self.notify(updates)

    def _flush_interval(self) -> float:
        """5 ms per running stream, from 20 ms (smooth text for a few) up to the config's
        most: about 200 chunks a second for the event loop to send, whatever the load."""
        per_stream = FLUSH_PER_STREAM * self.stats.running_streams
        return min(self.config.flush_interval, max(MIN_FLUSH_INTERVAL, per_stream))

    def _end_all(self, reason: str) -> None:
        """On stop: every running and waiting job ends, so no client waits for ever."""
        for batch in self._batches.values():
            self._post(batch.fail(reason, "shutdown"))
        with self._lock:
            pending, self._pending = list(self._pending), deque()
            self.stats.queued_streams = self.stats.running_streams = 0
        for job in pending:
            self._post([Update(job, i, "", "shutdown", reason) for i in range(job.streams)])
        self._flush(force=True)
