"""The HTTP server: FastAPI routes over the engine, the page, and the guards around them.

    GET  /                   the playground page (static files shipped in the package)
    GET  /healthz            503 while the models load, then 200
    GET  /metrics            Prometheus text: streams, characters, refusals
    GET  /v1/models          the served models, with charrnn's own fields
    GET  /v1/models/{id}/loss_curve   a model's training and validation losses
    GET  /v1/models/{id}/web/manifest, /web/weights   the model for the page's runtime
    GET  /web/...            the browser runtime and views (charrnn/web), as export ships them
    POST /v1/completions     OpenAI's Completions API, plain or streamed (SSE)
    GET  /openapi.json       the API's schema

With an API key, /v1 and /metrics need `Authorization: Bearer KEY`.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from charrnn import __version__
from charrnn.errors import CharrnnError
from charrnn.serve.completions import answer, deliver
from charrnn.serve.config import ServeConfig
from charrnn.serve.engine import Engine
from charrnn.serve.guards import BodyLimit, validation_message
from charrnn.serve.metrics import metrics_registry, metrics_text
from charrnn.serve.models import ModelSource
from charrnn.serve.protocol import APIError, CompletionRequest, model_entry
from charrnn.web import ASSETS, runtime_source

STATIC = Path(__file__).parent / "static"
REFUSAL_OF_STATUS = {
    400: "invalid",
    401: "unauthorized",
    404: "unknown_model",
    413: "too_large",
    422: "invalid",
    503: "loading",
}


def create_app(
    sources: list[ModelSource],
    device,
    config: ServeConfig,
    on_loaded: Callable[[str | None], None] | None = None,
) -> FastAPI:
    """The app; its lifespan starts the engine (which loads the models) and stops it.
    `on_loaded` hears, on the event loop, why loading failed (or None once it is done)."""
    loop_holder: dict = {}

    def notify(updates):  # on the worker thread
        loop_holder["loop"].call_soon_threadsafe(deliver, updates)

    engine = Engine(sources, device, config, notify)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop_holder["loop"] = asyncio.get_running_loop()
        engine.start()
        watcher = asyncio.create_task(watch_loading(engine, on_loaded))
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.to_thread(engine.stop)

    app = FastAPI(
        title="charrnn",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="OpenAI-compatible completions from charrnn models.",
    )
    app.state.engine = engine
    add_guards(app, engine, config)
    add_routes(app, engine, auth_dependency(engine, config))
    return app


class EngineServer(uvicorn.Server):
    """uvicorn's server, which stops the engine as soon as it begins to shut down: every
    stream in flight then ends with an error event saying so (a plain request gets a
    503), rather than being cut when uvicorn's grace period ends."""

    def __init__(self, app: FastAPI, config: ServeConfig):
        # past this many connections uvicorn answers 503 at once: a bound on what
        # clients that have not yet shown a key can hold open
        limit = 4 * (config.max_streams + config.max_queue) + 64
        super().__init__(uvicorn.Config(app, log_level="warning", access_log=False,
                                        lifespan="on", timeout_graceful_shutdown=3,
                                        limit_concurrency=limit))  # fmt: skip
        self.engine: Engine = app.state.engine

    async def shutdown(self, sockets=None) -> None:
        await asyncio.to_thread(self.engine.stop)
        await super().shutdown(sockets)


async def watch_loading(engine: Engine, on_loaded) -> None:
    await asyncio.to_thread(engine.ready.wait)
    if on_loaded is not None:
        on_loaded(engine.failure)


def auth_dependency(engine: Engine, config: ServeConfig):
    bearer = HTTPBearer(auto_error=False, description="The server's --api-key, if it has one.")

    # FastAPI's way to declare a dependency is a default value (it reads `bearer` from here,
    # which a string annotation could not name)
    async def require_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):  # noqa: B008
        if config.api_key is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), config.api_key.encode()):  # constant time
            raise APIError(
                401,
                "a missing or wrong API key: send Authorization: Bearer KEY",
                code="invalid_api_key",
                refusal="unauthorized",
            )

    return Depends(require_key)


def add_guards(app: FastAPI, engine: Engine, config: ServeConfig) -> None:
    def error_response(e: APIError) -> JSONResponse:
        if e.refusal is not None:
            engine.stats.refuse(e.refusal)
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        message, param = validation_message(e.errors())
        # a body cut at the size limit fails to parse, but it is counted as too large
        refusal = None if request.scope.get(BodyLimit.CUT) else "invalid"
        return error_response(APIError(400, message, param=param, refusal=refusal))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        message = e.detail if e.status_code != 404 else f"no such path: {request.url.path}"
        return error_response(APIError(e.status_code, str(message), headers=e.headers))

    app.add_middleware(BodyLimit, max_body=config.max_body, on_refuse=engine.stats.refuse)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )


def add_routes(app: FastAPI, engine: Engine, auth) -> None:
    registry = metrics_registry(engine)

    def loaded() -> None:
        if not engine.ready.is_set() or engine.failure:
            raise APIError(
                503,
                "the models are still loading; try again shortly",
                type="server_error",
                code="loading",
                headers={"Retry-After": "1"},
                refusal="loading",
            )

    def served(model_id: str):
        loaded()
        if model_id not in engine.models:
            known = ", ".join(engine.models)
            raise APIError(
                404,
                f"no model {model_id!r} here; this server has: {known}",
                code="model_not_found",
                param="model",
                refusal="unknown_model",
            )
        return engine.models[model_id]

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/web/runtime.js", include_in_schema=False)
    async def runtime_script():
        return Response(runtime_source(), media_type="text/javascript")

    app.mount("/web", StaticFiles(directory=ASSETS), name="web")

    @app.get("/healthz", summary="200 once the models are loaded, 503 before")
    async def healthz():
        if engine.failure:
            return JSONResponse({"status": "failed", "error": engine.failure}, status_code=503)
        if not engine.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ok", "models": len(engine.models)}

    @app.get("/metrics", dependencies=[auth], summary="Prometheus metrics")
    async def metrics():
        body, content_type = metrics_text(registry)
        return Response(body, media_type=content_type)

    @app.get("/v1/models", dependencies=[auth], summary="The served models")
    async def list_models():
        loaded()
        return {"object": "list", "data": [model_entry(m) for m in engine.models.values()]}

    @app.get("/v1/models/{model_id}", dependencies=[auth], summary="One served model")
    async def one_model(model_id: str):
        return model_entry(served(model_id))

    @app.get(
        "/v1/models/{model_id}/loss_curve",
        dependencies=[auth],
        summary="charrnn: a model's training and validation losses",
    )
    async def loss_curve(model_id: str):
        return await asyncio.to_thread(served(model_id).loss_curve)

    async def web_model(model_id: str) -> tuple[dict, bytes]:
        model = served(model_id)
        try:
            return await asyncio.to_thread(model.web_model)
        except CharrnnError as e:  # a model too large for a page
            raise APIError(422, str(e), code="not_runnable_in_browser", refusal="invalid") from None

    @app.get("/v1/models/{model_id}/web/manifest", dependencies=[auth], summary="charrnn: "
             "the model's manifest for the browser runtime")  # fmt: skip
    async def web_manifest(model_id: str):
        return (await web_model(model_id))[0]

    @app.get("/v1/models/{model_id}/web/weights", dependencies=[auth], summary="charrnn: "
             "the model's fp32 weights for the browser runtime")  # fmt: skip
    async def web_weights(model_id: str):
        return Response((await web_model(model_id))[1], media_type="application/octet-stream")

    @app.post("/v1/completions", dependencies=[auth], summary="Complete a prompt")
    async def completions(body: CompletionRequest, request: Request):
        return await answer(engine, body, served(body.model), request)
