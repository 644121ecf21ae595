"""A request as the engine sees it (`Job`), and the text it hands back (`Update`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from charrnn.sample.config import SampleConfig


@dataclass(eq=False)
class Job:
    """`n` completions of each prompt, drawn with one SampleConfig.

    Prompts are prepared text the model can read (the server checks them before the
    job is queued). Completion `index` is `prompt_number * n + j`, as in OpenAI's API.
    With a `seed`, completion i draws from its own generator seeded (seed, i), so a
    request served alone gives the same text every time.
    """

    model: str
    prompts: list[str]
    max_chars: int
    config: SampleConfig
    n: int = 1
    stops: tuple[str, ...] = ()
    seed: int | None = None
    cancelled: bool = False  # set by the client's side; the worker only reads it
    started: bool = False
    took_queue_place: bool = False
    handle: object = field(default=None, repr=False)  # the server's own, for delivery

    @property
    def streams(self) -> int:
        return len(self.prompts) * self.n


@dataclass
class Update:
    """New text of one completion, and how it ended (None while it goes on).

    finish: "stop" (a stop string), "length" (max_chars), "error" or "shutdown"
    (`message` says why).
    """

    job: Job
    index: int
    text: str
    finish: str | None = None
    message: str = ""
