"""`charrnn serve`: trained models behind an OpenAI-compatible HTTP API and a web page."""

from __future__ import annotations

import socket
import sys

import click
from rich.markup import escape

from charrnn.cli.console import EXIT_SIGINT, info, user_errors, warn
from charrnn.cli.options import (
    SectionedCommand,
    SectionOption,
    config_options,
    device_option,
    out_option,
)
from charrnn.errors import CharrnnError
from charrnn.serve.config import ServeConfig

SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client")


@click.command(cls=SectionedCommand)
@click.argument("models", nargs=-1, metavar="[CHECKPOINT_OR_RUN]...")
@out_option(
    "Where runs are; with no CHECKPOINT_OR_RUN, every run's best.pt is served.", section="server"
)
@config_options(ServeConfig)
@click.option(
    "--api-key",
    envvar="CHARRNN_API_KEY",
    default=None,
    metavar="KEY",
    show_default="CHARRNN_API_KEY, else none",
    help="Require `Authorization: Bearer KEY` on /v1 and /metrics.",
    cls=SectionOption,
    section="server",
)
@click.option(
    "--cors-origin",
    multiple=True,
    metavar="URL",
    help="Let pages from this origin call the API (CORS). Repeatable; off by default.",
    cls=SectionOption,
    section="server",
)
@device_option()
def serve(models, out, api_key, cors_origin, device, **options):
    """Serve models over HTTP: OpenAI's Completions API, and a playground page at /.

    Each CHECKPOINT_OR_RUN is a .pt file, a run folder, or a run's name under --out;
    requests call a model by its run's name (GET /v1/models lists them). Every
    stream of every request is generated together as one batch.

    \b
    Examples:
      charrnn serve                                  # every run under checkpoints/
      charrnn serve shakespeare --port 8080
      charrnn serve checkpoints/a/best.pt --api-key s3cret
      curl localhost:8000/v1/completions -H 'Content-Type: application/json' \\
        -d '{"model": "shakespeare", "prompt": "ROMEO:", "max_tokens": 200}'
    """
    with user_errors():
        check_serve_packages()
        config = ServeConfig(**options, api_key=api_key or None, cors_origins=tuple(cors_origin))
        from charrnn.runtime import device_label, resolve_device
        from charrnn.serve.models import find_models

        sources = find_models(list(models), out)
        dev = resolve_device(device)
        sock = listen(config.host, config.port)
        url = address(config.host, sock.getsockname()[1])
        if not config.loopback and config.api_key is None:
            warn(
                f"listening on {escape(config.host)} without --api-key: anyone who can reach "
                "this machine can use the models"
            )
        names = ", ".join(s.id for s in sources)
        info(f"loading {len(sources)} model(s) onto {device_label(dev)}: {escape(names)}")
        run_server(sources, dev, config, sock, url)


def check_serve_packages() -> None:
    import importlib.util

    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise CharrnnError(
            f"charrnn serve needs {', '.join(missing)}: pip install 'charrnn[serve]'"
        )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the address is known before serving."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(2048)
    except OSError as e:
        raise CharrnnError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def address(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def run_server(sources, device, config: ServeConfig, sock: socket.socket, url: str) -> None:
    from charrnn.serve.app import EngineServer, create_app

    failure: list[str] = []

    def loaded(error: str | None) -> None:
        if error is not None:
            failure.append(error)
            server.should_exit = True
        else:
            info(f"serving at [bold]{url}[/] (the API under {url}v1; Ctrl-C stops)")

    server = EngineServer(create_app(sources, device, config, on_loaded=loaded), config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stopped gracefully, then re-raised the Ctrl-C
        info("stopped")
        sys.exit(EXIT_SIGINT)
    if failure:
        raise CharrnnError(failure[0])
