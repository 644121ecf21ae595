"""How many CPU threads to train on, measured while training, on a machine others share.

PyTorch's CPU kernels split each operation over OpenMP threads that meet at a barrier,
and a thread waiting there spins on its core. When another program keeps a core busy,
the thread that shares that core gets half of it, and every barrier waits for it: on
2 cores beside one busy process, 2 threads trained 3 to 5 times slower than on a quiet
machine, and 1 thread 2.5 times faster than 2 (docs/benchmarks.md). Neither count
suits both cases, and nothing outside the run says which case this is, so the trainer
measures.

ThreadTuner is told how long each training step took. The run starts on one thread
fewer, times a few steps there and a few on every core, and keeps the fewer only if
it was clearly faster. While it watches, a step time that moves away from what it measured last
(another program started or stopped) makes it compare again, and now and then it
tries one thread more, up to the count it started with, so a run given back its cores
takes them again. A comparison costs a few steps, most of a second at the defaults.

It is a pure state machine fed with step times: `step_ended` takes the time a step
began and measures it through `step_seconds`, which tests replace with made-up times.
"""

from __future__ import annotations

import statistics
import time
from collections import deque

SETTLE_STEPS = 1  # the first step allocates and warms caches: never timed
SETTLE_SECONDS = 0.2  # nor is anything before this much training
WINDOW_STEPS = 3  # one measurement: the median of at least this many steps
WINDOW_SECONDS = 0.2  # ... lasting at least this long,
LONG_WINDOW_SECONDS = 0.5  # or of however few steps last this long (slow steps are clear)
MARGIN = 0.08  # another count is taken only if its steps are this much quicker
CLEAR = 1.5  # a step this many times slower than the other count's windows is a window
DRIFT = 0.3  # steps this much slower or quicker than measured: the machine changed
RECENT_STEPS = 8  # the median of these is watched for drift
# seconds until the next look at one thread more (below the starting count) or one
# fewer (at it, where drift is the usual sign); doubled after each comparison lost
RECHECK_BELOW = (10.0, 80.0)
RECHECK_AT_MOST = (30.0, 240.0)


def tuner_for(given: int | None, device: str, processes: int, threads: int) -> ThreadTuner | None:
    """A tuner where the count is charrnn's to choose: on the CPU, with no --threads
    given, in one process (torchrun's ranks take 1 thread each), with cores to spare."""
    if given is not None or device != "cpu" or processes > 1 or threads < 2:
        return None
    return ThreadTuner(threads)


def step_seconds(started: float) -> float:
    """How long the step that began at `started` (time.perf_counter) took."""
    return time.perf_counter() - started


class ThreadTuner:
    """Picks the thread count, between 1 and `most`, whose steps are quickest now.

    A comparison times windows of steps: the count in use (A), another count (B),
    then A again. B is taken only if every B window beat every A window by MARGIN:
    a window slowed by the run's warm-up, or by a program that came or went
    mid-comparison, cannot pick a count that is slower. The run's first comparison
    is B, A, with the steps starting on B (`running` is the count the first step
    runs on): there the warm-up can only slow B, and a busy machine costs the run
    one window on the count that spins. A step far slower than the other count's
    windows is a window by itself, so a look at a count that turns out worse costs
    one step.
    """

    def __init__(self, threads: int, most: int | None = None):
        self.threads = threads  # the count settled on
        self.running = max(1, threads - 1)
        self.most = most or threads
        self.phase = "settle"  # settle -> compare -> watch -> compare ...
        self.elapsed = 0.0  # seconds of steps seen
        self.steps = 0
        self.plan: list[int] = []  # the counts of a comparison's windows, in turn
        self.timed: list[tuple[int, float]] = []  # (count, median step seconds) per window
        self.window: list[float] = []
        self.candidate = threads
        self.direction = -1
        self.reference = 0.0  # the median step time on `threads`, measured last
        self.recent: deque[float] = deque(maxlen=RECENT_STEPS)
        self.next_look = 0.0
        self.wait = RECHECK_AT_MOST[0]

    def step_ended(self, started: float) -> int | None:
        """Note a step that began at `started`; see `step_done`."""
        return self.step_done(step_seconds(started))

    def step_done(self, seconds: float) -> int | None:
        """Note one step's time. Returns the count to run the next step on, or None to
        go on as before."""
        self.elapsed += seconds
        self.steps += 1
        if self.phase == "settle":
            if self.steps > SETTLE_STEPS and self.elapsed >= SETTLE_SECONDS:
                return self.compare(-1, candidate_first=True)
            return None
        if self.phase == "watch":
            return self.watch(seconds)
        self.window.append(seconds)
        if not (window_full(self.window) or self.clearly_slower(seconds)):
            return None
        self.timed.append((self.running, statistics.median(self.window)))
        self.window = []
        if len(self.timed) < len(self.plan):
            return self.run_on(self.plan[len(self.timed)])
        return self.judge()

    # ------------------------------------------------------------ phases

    def compare(self, direction: int, candidate_first: bool = False) -> int | None:
        """Time the count in use against one thread more or fewer (`direction`); where
        there is no such count, measure the one in use again."""
        self.phase, self.direction, self.timed, self.window = "compare", direction, [], []
        self.candidate = self.threads + direction
        a, b = self.threads, self.candidate
        if not 1 <= b <= self.most:
            self.plan = [a]
        else:
            self.plan = [b, a] if candidate_first else [a, b, a]
        return self.run_on(self.plan[0])

    def judge(self) -> int | None:
        """Every window is timed: keep B if each of its windows was clearly quicker."""
        a = [t for n, t in self.timed if n == self.threads]
        b = [t for n, t in self.timed if n == self.candidate]
        if b and max(b) < min(a) * (1 - MARGIN):
            self.threads, self.reference = self.candidate, b[-1]
            self.wait = self.recheck_range()[0]
            if 1 <= self.threads + self.direction <= self.most:
                return self.compare(self.direction)  # a count further on may be quicker
        else:
            self.reference = a[-1]
            self.wait = min(2 * self.wait, self.recheck_range()[1])
        self.phase = "watch"
        self.recent.clear()
        self.next_look = self.elapsed + self.wait
        return self.run_on(self.threads)

    def watch(self, seconds: float) -> int | None:
        """Compare again when the step time drifts, or when the wait is over."""
        self.recent.append(seconds)
        if self.elapsed >= self.next_look:
            return self.compare(+1 if self.threads < self.most else -1)
        if len(self.recent) == RECENT_STEPS:
            now = statistics.median(self.recent)
            if abs(now - self.reference) > DRIFT * self.reference:
                self.wait = self.recheck_range()[0]
                # slower: other work arrived, so try fewer; quicker: some left, try more
                return self.compare(-1 if now > self.reference else +1)
        return None

    def clearly_slower(self, seconds: float) -> bool:
        """Whether a step took far longer than every window of the other count so far:
        then it alone stands for its count, and no more steps are spent on it."""
        other = [t for n, t in self.timed if n != self.running]
        return bool(other) and seconds > CLEAR * max(other)

    def run_on(self, count: int) -> int | None:
        """`count` if the steps must move to it, else None."""
        if count == self.running:
            return None
        self.running = count
        return count

    def recheck_range(self) -> tuple[float, float]:
        return RECHECK_BELOW if self.threads < self.most else RECHECK_AT_MOST


def window_full(window: list[float]) -> bool:
    """Enough steps to stand for their count: a few, or fewer if they are slow."""
    total = sum(window)
    return (len(window) >= WINDOW_STEPS and total >= WINDOW_SECONDS) or (
        total >= LONG_WINDOW_SECONDS
    )
