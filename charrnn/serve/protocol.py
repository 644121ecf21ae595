"""OpenAI's Completions API as charrnn speaks it: the request, the answers, the errors.

The request model is pydantic's, so FastAPI validates it and the OpenAPI schema
describes it. Fields of OpenAI's API that a character model cannot honour
(logprobs, penalties, suffix, logit_bias, best_of above n) are refused with a 400
that names them, rather than silently ignored.
"""

from __future__ import annotations

import time
import uuid

from pydantic import BaseModel, ConfigDict, Field, model_validator

from charrnn.errors import CharrnnError
from charrnn.serve.config import ServeConfig


class APIError(CharrnnError):
    """An answer in OpenAI's error shape: {"error": {"message", "type", "code", "param"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers=None,
        refusal: str | None = None,
    ):
        super().__init__(message)
        self.status, self.type, self.code, self.param = status, type, code, param
        self.headers = headers or {}
        self.refusal = refusal  # the reason /metrics counts it under, if any

    def body(self) -> dict:
        return {
            "error": {
                "message": str(self),
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }


# fields whose default is not None: a `null` for them means the default
NON_NULL = {"prompt", "max_tokens", "temperature", "top_p", "n", "stream", "echo",
            "presence_penalty", "frequency_penalty"}  # fmt: skip


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """POST /v1/completions. max_tokens counts characters (ids, for a byte or
    SentencePiece model, are not what people ask for)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A model id from GET /v1/models.")
    prompt: str | list[str] = Field("", description="The seed text, or a list of seeds.")
    max_tokens: int = Field(16, ge=1, description="Characters to generate (at most).")
    temperature: float = Field(1.0, ge=0, allow_inf_nan=False, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    top_k: int | None = Field(None, ge=1, description="charrnn's extension: the K likeliest.")
    n: int = Field(1, ge=1, description="Completions per prompt.")
    stop: str | list[str] | None = Field(None, description="End a completion at this text.")
    seed: int | None = Field(None, description="Reproducible text, for a request served alone.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    echo: bool = Field(False, description="Begin each completion's text with its prompt.")
    user: str | None = None
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def nulls_mean_defaults(cls, data):
        """OpenAI takes `null` for any optional field and means its default."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in NON_NULL}
        return data

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return tuple(s for s in ([self.stop] if isinstance(self.stop, str) else self.stop) if s)

    def check(self, limits: ServeConfig) -> None:
        """The bounds this server keeps, and the fields it cannot honour: a 400 each."""
        unsupported = {
            "logprobs": self.logprobs not in (None, 0),
            "suffix": self.suffix is not None,
            "presence_penalty": self.presence_penalty != 0,
            "frequency_penalty": self.frequency_penalty != 0,
            "logit_bias": bool(self.logit_bias),
            "best_of": self.best_of not in (None, self.n),
        }
        for name, used in unsupported.items():
            if used:
                raise APIError(400, f"{name} is not supported by charrnn", param=name,
                               refusal="invalid")  # fmt: skip
        prompts = self.prompts()
        if not prompts:
            raise APIError(400, "prompt is an empty list", param="prompt", refusal="invalid")
        stops = self.stops()
        longest_stop = max(map(len, stops), default=0)
        bounds = [  # (param, what, value, bound, flag)
            ("max_tokens", "max_tokens", self.max_tokens, limits.max_tokens, "--max-tokens"),
            ("n", "n" if len(prompts) == 1 else "n times the prompts", self.n * len(prompts),
             limits.max_n, "--max-n"),
            ("stop", "the number of stops", len(stops), limits.max_stops, "--max-stops"),
            ("stop", "a stop's length", longest_stop, limits.max_stop_chars, "--max-stop-chars"),
            ("prompt", "the prompt's length", max(map(len, prompts)), limits.max_prompt,
             "--max-prompt"),
        ]  # fmt: skip
        for param, what, value, bound, flag in bounds:
            if value > bound:
                raise APIError(
                    400,
                    f"{what} is {value}; this server allows at most {bound} ({flag})",
                    param=param,
                    refusal="invalid",
                )


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def completion(cid: str, created: int, model: str, choices: list[dict], usage=None) -> dict:
    body = {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def choice(index: int, text: str, finish_reason: str | None) -> dict:
    return {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}


def usage(prompt_chars: int, completion_chars: int) -> dict:
    return {
        "prompt_tokens": prompt_chars,
        "completion_tokens": completion_chars,
        "total_tokens": prompt_chars + completion_chars,
    }


def model_entry(served) -> dict:
    """One model of GET /v1/models: OpenAI's fields, then charrnn's own."""
    created = served.card.get("created")
    return {
        "id": served.id,
        "object": "model",
        "created": _epoch(created),
        "owned_by": "charrnn",
        "charrnn": {k: v for k, v in served.card.items() if k != "created"},
    }


def _epoch(created) -> int:
    if isinstance(created, str):
        import datetime as dt

        try:
            return int(dt.datetime.fromisoformat(created).timestamp())
        except ValueError:
            pass
    return int(time.time())
