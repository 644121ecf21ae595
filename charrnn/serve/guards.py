"""What stands in front of the routes: the request body's size limit, and validation
errors said in one line."""

from __future__ import annotations

import json


class BodyLimit:
    """ASGI middleware: a body above `max_body` bytes is a 413 in OpenAI's error shape.

    A Content-Length over the limit is refused before anything is read. A chunked
    body is counted as it arrives; past the limit, reading stops and whatever the
    app answers is replaced by the 413.
    """

    CUT = "charrnn.body_cut"  # set in the scope when a body was cut at the limit

    def __init__(self, app, max_body: int, on_refuse=None):
        self.app, self.max_body, self.on_refuse = app, max_body, on_refuse

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await self.refuse(send)
        received, over = 0, False

        async def counted_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    over = True
                    scope[self.CUT] = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message):
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                await self.refuse(send)

        await self.app(scope, counted_receive, guarded_send)

    async def refuse(self, send) -> None:
        if self.on_refuse is not None:
            self.on_refuse("too_large")
        body = json.dumps(
            {
                "error": {
                    "message": f"the request body is over {self.max_body:,} bytes (--max-body)",
                    "type": "invalid_request_error",
                    "code": "request_too_large",
                    "param": None,
                }
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def validation_message(errors) -> tuple[str, str | None]:
    """pydantic's first complaint as one line, and the field it is about."""
    if not errors:
        return "the request is not valid", None
    first = errors[0]
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = where[0] if where else None
    text = first.get("msg", "is not valid")
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "extra_forbidden":
        return f"unknown field {'.'.join(where)!r}", param
    if first.get("type") == "missing":
        return f"{'.'.join(where)} is required", param
    return (f"{'.'.join(where)}: {text}" if where else text), param
