"""The HTTP API through FastAPI's test client: shapes, limits, errors, streaming, the page."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager

import pytest
import torch

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from charrnn.serve import engine as engine_module  # noqa: E402
from charrnn.serve.app import create_app  # noqa: E402
from charrnn.serve.config import ServeConfig  # noqa: E402
from charrnn.serve.models import find_models  # noqa: E402
from tests.serving import train_tiny_run, wait_until  # noqa: E402

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("api"))


@contextmanager
def client_for(runs, **options):
    app = create_app(find_models([], runs), torch.device("cpu"), ServeConfig(**options))
    with TestClient(app) as client:
        wait_until(lambda: client.get("/healthz").status_code == 200, 30, "the models to load")
        yield client


@pytest.fixture(scope="module")
def client(runs):
    with client_for(runs, max_tokens=500, max_n=4, max_streams=8, max_stops=2) as c:
        yield c


def complete(client, **body):
    return client.post("/v1/completions", json={"model": "tiny", "prompt": "ROMEO:", **body})


def events(response) -> list:
    """The `data:` payloads of an SSE body, parsed (the last is the string [DONE])."""
    out = []
    for block in response.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_a_completion_has_openais_shape(client):
    r = complete(client, max_tokens=40, n=2, seed=3)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "tiny"
    assert body["id"].startswith("cmpl-") and isinstance(body["created"], int)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    for c in body["choices"]:
        assert set(c) == {"index", "text", "finish_reason", "logprobs"}
        assert len(c["text"]) == 40 and c["finish_reason"] == "length" and c["logprobs"] is None
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 80, "total_tokens": 86}


def test_a_stream_is_chunks_in_the_same_shape_then_done(client):
    plain = complete(client, max_tokens=60, seed=5).json()["choices"][0]["text"]
    r = complete(client, max_tokens=60, seed=5, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = events(r)
    assert chunks[-1] == "[DONE]"
    usage, pieces = chunks[-2], chunks[:-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 60
    assert all(c["object"] == "text_completion" and c["id"] == usage["id"] for c in pieces)
    assert "".join(c["choices"][0]["text"] for c in pieces) == plain  # in order, all of it
    finishes = [c["choices"][0]["finish_reason"] for c in pieces]
    assert finishes[-1] == "length" and set(finishes[:-1]) <= {None}


def test_stop_strings_end_a_completion_and_are_not_shown(client):
    text = complete(client, max_tokens=80, temperature=0).json()["choices"][0]["text"]
    stop = text[20:23]
    r = complete(client, max_tokens=80, temperature=0, stop=[stop, "zzz"]).json()
    assert r["choices"][0]["text"] == text[: text.index(stop)]
    assert r["choices"][0]["finish_reason"] == "stop"


def test_echo_and_a_list_of_prompts(client):
    r = complete(client, prompt=["ROMEO:", "NURSE:"], n=2, max_tokens=5, echo=True).json()
    assert [c["text"][:6] for c in r["choices"]] == ["ROMEO:", "ROMEO:", "NURSE:", "NURSE:"]
    assert all(len(c["text"]) == 11 for c in r["choices"])


def test_korean_and_emoji_prompts(client):
    r = complete(client, prompt="줄리엣: 🌹", max_tokens=10).json()
    assert len(r["choices"][0]["text"]) == 10


@pytest.mark.parametrize(
    "body, needle, param",
    [
        ({"max_tokens": 501}, "at most 500 (--max-tokens)", "max_tokens"),
        ({"n": 5}, "at most 4 (--max-n)", "n"),
        ({"stop": ["a", "b", "c"]}, "at most 2 (--max-stops)", "stop"),
        ({"max_tokens": 0}, "max_tokens", "max_tokens"),
        ({"temperature": -1}, "temperature", "temperature"),
        ({"top_p": 0}, "top_p", "top_p"),
        ({"prompt": "ROMEO: ¤"}, "never saw: '¤'", "prompt"),
        ({"prompt": [1, 2]}, "prompt", "prompt"),
        ({"logprobs": 2}, "logprobs is not supported", "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty is not supported", "presence_penalty"),
        ({"temprature": 1}, "unknown field 'temprature'", "temprature"),
        ({"stop": ["x" * 257]}, "a stop's length is 257; this server allows at most 256", "stop"),
        ({"prompt": "ROMEO " * 2000}, "the prompt's length is 12000", "prompt"),
        ({"model": None}, "model", "model"),
    ],
)
def test_bad_requests_are_400_in_openais_error_shape(client, body, needle, param):
    r = complete(client, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param and "code" in error


def test_a_body_that_is_not_json_is_400(client):
    r = client.post(
        "/v1/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


def test_an_unknown_model_is_404_and_names_the_served_ones(client):
    r = complete(client, model="../../etc/passwd")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found" and "tiny" in r.json()["error"]["message"]


def test_a_body_over_the_limit_is_413(runs):
    with client_for(runs, max_body=2000) as client:
        r = complete(client, prompt="ROMEO: " * 400)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"
        # a chunked body, with no Content-Length, is counted as it arrives
        chunks = iter([b'{"model": "tiny", "prompt": "', b"x" * 3000, b'"}'])
        r = client.post(
            "/v1/completions", content=chunks, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        assert "too_large" in client.get("/metrics").text


def test_models_list_charrnns_own_fields(client):
    r = client.get("/v1/models").json()
    assert r["object"] == "list" and [m["id"] for m in r["data"]] == ["tiny"]
    model = r["data"][0]
    assert model["object"] == "model" and model["owned_by"] == "charrnn"
    card = model["charrnn"]
    assert card["tokenizer"] == "char" and card["vocab_size"] > 40 and card["steps"] == 40
    assert 0 < card["best_val_bits"] < 8 and card["unit"] == "char"
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    curve = client.get("/v1/models/tiny/loss_curve").json()
    assert len(curve["train"]) >= 2 and len(curve["val"]) >= 2


def test_metrics_are_prometheus_text(client):
    complete(client, max_tokens=10)
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    for name in (
        "charrnn_streams_running",
        "charrnn_streams_queued",
        "charrnn_characters_generated_total",
        'charrnn_requests_refused_total{reason="queue_full"}',
    ):
        assert f"\n{name} " in r.text


def test_the_openapi_schema_is_served(client):
    schema = client.get("/openapi.json").json()
    assert "/v1/completions" in schema["paths"]
    assert "top_k" in schema["components"]["schemas"]["CompletionRequest"]["properties"]


def test_an_api_key_is_required_when_set(runs):
    with client_for(runs, api_key=KEY) as client:
        assert client.get("/healthz").status_code == 200  # probes need no key
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            r = client.get("/v1/models", headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/metrics").status_code == 401
        for part in ("manifest", "weights"):  # the model's weights, for the page's views
            assert client.get(f"/v1/models/tiny/web/{part}").status_code == 401
        ok = {"Authorization": f"Bearer {KEY}"}
        assert client.get("/v1/models", headers=ok).status_code == 200
        assert client.get("/v1/models/tiny/web/manifest", headers=ok).status_code == 200
        r = client.post("/v1/completions", headers=ok, json={"model": "tiny", "prompt": "R"})
        assert r.status_code == 200


def test_cors_is_off_unless_an_origin_is_given(runs, client):
    origin = {"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.get("/v1/models", headers=origin).headers
    with client_for(runs, cors_origins=("http://elsewhere.example",)) as allowed:
        r = allowed.options("/v1/completions", headers=origin)
        assert r.headers["access-control-allow-origin"] == "http://elsewhere.example"


def test_healthz_is_503_while_the_models_load(runs, monkeypatch):
    release = threading.Event()
    real_load = engine_module.load_model

    def slow_load(source, device):
        release.wait(30)
        return real_load(source, device)

    monkeypatch.setattr(engine_module, "load_model", slow_load)
    app = create_app(find_models([], runs), torch.device("cpu"), ServeConfig())
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 503
        r = complete(client)
        assert r.status_code == 503 and r.json()["error"]["code"] == "loading"
        assert client.get("/v1/models").status_code == 503
        release.set()
        wait_until(lambda: client.get("/healthz").status_code == 200, 30, "loading to end")
        assert complete(client, max_tokens=5).status_code == 200


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>charrnn playground</title>" in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN
    # a path that climbs out of the static folder, sent as is (%2e%2e is "..")
    assert client.get("/static/%2e%2e/models.py").status_code == 404
    assert client.get("/static/..%2fmodels.py").status_code == 404


def test_nulls_mean_the_defaults_as_in_openais_api(client):
    r = complete(client, max_tokens=None, temperature=None, top_p=None, n=None, stream=None,
                 echo=None, stop=None, seed=None, presence_penalty=None)  # fmt: skip
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 1 and len(r.json()["choices"][0]["text"]) == 16


def test_any_integer_seed_is_taken(client):
    for seed in (-1, 2**70):
        r = complete(client, max_tokens=10, seed=seed)
        assert r.status_code == 200, r.text
    again = [complete(client, max_tokens=20, seed=-5).json()["choices"][0]["text"] for _ in "ab"]
    assert again[0] == again[1]


def test_refusals_are_counted_by_their_reason(runs):
    with client_for(runs) as client:
        client.get("/favicon.ico")  # not a model: counted as nothing
        complete(client, model="other")
        complete(client, max_tokens=0)

        def count(reason):
            text = client.get("/metrics").text
            return float(text.split(f'refused_total{{reason="{reason}"}} ')[1].split()[0])

        assert count("unknown_model") == 1 and count("invalid") == 1


def test_the_page_gets_the_model_and_the_runtime_it_runs(runs, client, monkeypatch):
    """The playground's views run the served model in the browser: its manifest and fp32
    weights (the bytes the sha256 names), the runtime and the views; a model too large
    for a page is a 422 that says why."""
    import hashlib

    from charrnn.export import weights

    manifest = client.get("/v1/models/tiny/web/manifest").json()
    data = client.get("/v1/models/tiny/web/weights").content
    assert manifest["format"] == "charrnn-web" and manifest["dtype"] == "fp32"
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert client.get("/v1/models/nope/web/manifest").status_code == 404
    runtime = client.get("/web/runtime.js")
    assert runtime.status_code == 200 and "function charrnnRuntime" in runtime.text
    assert client.get("/web/views.js").status_code == 200
    assert client.get("/web/__init__.py").status_code == 404  # the assets only
    monkeypatch.setattr(weights, "MAX_PARAMETERS", 10)
    with client_for(runs) as fresh:
        r = fresh.get("/v1/models/tiny/web/weights")
        assert r.status_code == 422 and "cannot run there" in r.json()["error"]["message"]
