"""ServeConfig: where `charrnn serve` listens and the bounds it keeps. Each field is also
the `charrnn serve` option that sets it (see charrnn.options); nothing heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.errors import CharrnnError
from charrnn.options import option

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig:
    host: str = option(
        "127.0.0.1",
        "Address to listen on; any but loopback (0.0.0.0, a LAN address) opens it to others.",
        metavar="ADDR",
        section="server",
    )
    port: int = option(
        8000,
        "Port to listen on; 0 picks a free one.",
        metavar="N",
        min=0,
        max=65535,
        section="server",
    )
    max_streams: int = option(
        64,
        "Streams generated together as one batch; requests beyond wait in the queue.",
        metavar="N",
        min=1,
        section="limits",
    )
    max_queue: int = option(
        64,
        "Requests waiting for room in the batch; beyond that the answer is 429.",
        metavar="N",
        min=0,
        section="limits",
    )
    max_tokens: int = option(
        4096,
        "The largest max_tokens (characters) a request may ask for.",
        metavar="N",
        min=1,
        section="limits",
    )
    max_n: int = option(
        16,
        "The most completions one request may ask for (n, times the prompts in a list).",
        metavar="N",
        min=1,
        section="limits",
    )
    max_stops: int = option(
        4, "The most stop strings one request may give.", metavar="N", min=0, section="limits"
    )
    max_stop_chars: int = option(
        256, "The longest stop string, in characters.", metavar="N", min=1, section="limits"
    )
    max_prompt: int = option(
        8192,
        "The longest prompt, in characters: the batch waits while a prompt is read.",
        metavar="N",
        min=1,
        section="limits",
    )
    max_body: int = option(
        1_000_000,
        "The largest request body, in bytes (the prompt is in it).",
        metavar="BYTES",
        min=1,
        section="limits",
    )
    # the longest wait (seconds) before the worker hands new text to the connections.
    # The event loop sends one chunk per stream per hand-over, so the engine waits
    # longer as streams grow in number (see Engine._flush_interval): 64 streams cost
    # the event loop about as little as a few.
    flush_interval: float = 0.1
    # the API key (None: none required) and the origins CORS allows; the CLI sets them
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self):
        if self.max_n > self.max_streams:
            raise CharrnnError(
                f"--max-n {self.max_n} is more than --max-streams {self.max_streams}: "
                "such a request could never join the batch"
            )

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS
