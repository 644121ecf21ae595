"""POST /v1/completions: a validated request becomes a Job; its updates become one JSON
answer, or Server-Sent Events as they come.

Runs on the event loop and never touches torch: prompts are checked against the
tokenizer here (pure Python), then the worker thread reads them.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from charrnn.errors import CharrnnError
from charrnn.sample.config import SampleConfig
from charrnn.serve.engine import Engine, Overloaded, Stopping
from charrnn.serve.jobs import Job, Update
from charrnn.serve.protocol import (
    APIError,
    CompletionRequest,
    choice,
    completion,
    completion_id,
    usage,
)


class Waiter:
    """The event loop's side of a job: updates arrive in batches from the worker."""

    def __init__(self, streams: int):
        self.open = set(range(streams))
        self.pending: list[Update] = []
        self.event = asyncio.Event()

    def put(self, updates: list[Update]) -> None:
        self.pending.extend(updates)
        self.open.difference_update(u.index for u in updates if u.finish)
        self.event.set()

    @property
    def finished(self) -> bool:
        """Every completion has ended (its last updates may still wait to be read)."""
        return not self.open

    @property
    def drained(self) -> bool:
        """Every completion has ended and every update has been read."""
        return not self.open and not self.pending

    async def next_batch(self, timeout: float | None = None) -> list[Update]:
        """The updates that arrived since the last call (waiting for one, up to timeout)."""
        if not self.pending:
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()
        batch, self.pending = self.pending, []
        return batch


def deliver(updates: list[Update]) -> None:
    """On the event loop: hand each job its updates (one call per worker flush)."""
    by_job: dict[int, tuple[Job, list[Update]]] = {}
    for u in updates:
        by_job.setdefault(id(u.job), (u.job, []))[1].append(u)
    for job, mine in by_job.values():
        if isinstance(job.handle, Waiter):
            job.handle.put(mine)


def make_job(body: CompletionRequest, served) -> Job:
    """The job for a checked request; a prompt the model cannot read is a 400."""
    prompts = [readable_prompt(served.vocab, p) for p in body.prompts()]
    try:
        top_p = body.top_p if body.top_p < 1 else None
        config = SampleConfig(body.temperature, body.top_k, top_p)
    except CharrnnError as e:
        raise APIError(400, str(e), refusal="invalid") from None
    return Job(served.id, prompts, body.max_tokens, config, body.n, body.stops(), body.seed)


def readable_prompt(vocab, prompt: str) -> str:
    text = vocab.prepare(prompt)
    if not text:
        if vocab.unknown("\n"):
            raise APIError(
                400,
                "the prompt is empty and this model has no newline to start from",
                param="prompt",
                refusal="invalid",
            )
        return "\n"
    if missing := vocab.unknown(text):
        shown = ", ".join(repr(c) for c in missing[:20])
        raise APIError(
            400,
            f"the prompt has {len(missing)} character(s) the model never saw: {shown}",
            param="prompt",
            refusal="invalid",
        )
    return text


async def answer(engine: Engine, body: CompletionRequest, served, request: Request):
    body.check(engine.config)
    job = make_job(body, served)
    job.handle = waiter = Waiter(job.streams)
    try:
        engine.submit(job)
    except Stopping as e:
        raise APIError(503, str(e), type="server_error", code="shutting_down") from None
    except Overloaded as e:
        raise APIError(
            429, str(e), type="server_overloaded", code="queue_full", headers={"Retry-After": "1"}
        ) from None
    reply = Reply(body, served.id)
    if body.stream:
        return StreamingResponse(
            stream_events(engine, job, waiter, reply),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await collect(engine, job, waiter, reply, request)


class Reply:
    """What every chunk or answer of one request shares."""

    def __init__(self, body: CompletionRequest, model: str):
        self.body, self.model = body, model
        self.id, self.created = completion_id(), int(time.time())
        prompts = body.prompts()
        self.prompts = [prompts[i // body.n] for i in range(len(prompts) * body.n)]
        self.prompt_chars = sum(len(p) for p in prompts)

    def chunk(self, choices: list[dict], with_usage=None) -> str:
        data = completion(self.id, self.created, self.model, choices, with_usage)
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def collect(engine: Engine, job: Job, waiter: Waiter, reply: Reply, request: Request):
    """Wait for every completion. A client that hangs up meanwhile cancels the job."""
    texts = [reply.prompts[i] if reply.body.echo else "" for i in range(job.streams)]
    finish: list[str | None] = [None] * job.streams
    made = 0
    watcher = asyncio.create_task(cancel_on_disconnect(engine, job, request))
    try:
        while not waiter.drained:
            updates = await waiter.next_batch()
            if job.cancelled:  # the client hung up: nobody reads an answer
                return Response(status_code=499)
            for u in updates:
                if u.finish in ("error", "shutdown"):
                    raise APIError(503 if u.finish == "shutdown" else 500, u.message,
                                   type="server_error", code=u.finish)  # fmt: skip
                texts[u.index] += u.text
                made += len(u.text)
                finish[u.index] = u.finish or finish[u.index]
    finally:
        watcher.cancel()
        if not waiter.finished:  # the client left, or a stream failed
            engine.cancel(job)
    choices = [choice(i, texts[i], finish[i]) for i in range(job.streams)]
    body = completion(
        reply.id, reply.created, reply.model, choices, usage(reply.prompt_chars, made)
    )
    return JSONResponse(body)


async def cancel_on_disconnect(engine: Engine, job: Job, request: Request) -> None:
    """The body is read, so the next message is the client hanging up (or never comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    engine.cancel(job)
    job.handle.put([])  # wake the waiting answer, which then sees nothing more comes


async def stream_events(engine: Engine, job: Job, waiter: Waiter, reply: Reply):
    """SSE: chunks in the Completions shape as text comes, then `data: [DONE]`.

    A client that goes away cancels this generator; the job then leaves the batch
    at the next step (or never starts, if it still waits).
    """
    made = 0
    try:
        if reply.body.echo:
            yield reply.chunk([choice(i, p, None) for i, p in enumerate(reply.prompts)])
        while not waiter.drained:
            updates = await waiter.next_batch()
            if failed := next((u for u in updates if u.finish in ("error", "shutdown")), None):
                error = APIError(500, failed.message, type="server_error", code=failed.finish)
                yield f"data: {json.dumps(error.body())}\n\n"
                return
            for index, text, finish in merged(updates):
                made += len(text)
                yield reply.chunk([choice(index, text, finish)])
        options = reply.body.stream_options
        if options is not None and options.include_usage:
            yield reply.chunk([], usage(reply.prompt_chars, made))
        yield "data: [DONE]\n\n"
    finally:
        if not waiter.finished:
            engine.cancel(job)


def merged(updates: list[Update]) -> list[tuple[int, str, str | None]]:
    """One (index, text, finish) per completion: a client that lags gets fewer, larger
    chunks instead of a backlog."""
    by_index: dict[int, list] = {}
    for u in updates:
        entry = by_index.setdefault(u.index, [u.index, "", None])
        entry[1] += u.text
        entry[2] = u.finish or entry[2]
    return [tuple(e) for e in by_index.values()]
