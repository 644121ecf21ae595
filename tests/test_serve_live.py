"""`charrnn serve` as a real process on 127.0.0.1: the official `openai` client, a client
that hangs up, overload, signals, command-line errors, and a bounded load test."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from tests.conftest import charrnn_cmd  # noqa: E402
from tests.serving import metric, running_server, train_tiny_run, wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(240)
KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
LONG = 1_000_000  # max_tokens of a stream that runs until it is cancelled


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="module")
def server(runs):
    """One server for the module: 4 streams in the batch, one queue place, an API key."""
    args = [
        "--out",
        runs,
        "--max-streams",
        "4",
        "--max-n",
        "4",
        "--max-queue",
        "1",
        "--max-tokens",
        LONG,
    ]
    with running_server(*args, env={"CHARRNN_API_KEY": KEY}) as (proc, base, lines):
        yield base


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=30)


def test_the_openai_client_completes(client):
    r = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=30, n=2, seed=4)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(len(c.text) == 30 and c.finish_reason == "length" for c in r.choices)
    again = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=30, n=2, seed=4)
    assert [c.text for c in again.choices] == [c.text for c in r.choices]
    assert r.usage.completion_tokens == 60


def test_the_openai_client_streams_with_a_stop(client):
    whole = client.completions.create(model="tiny", prompt="NURSE:", max_tokens=80, temperature=0)
    text = whole.choices[0].text
    stop = text[30:33]
    stream = client.completions.create(
        model="tiny", prompt="NURSE:", max_tokens=80, temperature=0, stop=stop, stream=True
    )
    pieces = list(stream)
    assert "".join(p.choices[0].text for p in pieces) == text[: text.index(stop)]
    assert pieces[-1].choices[0].finish_reason == "stop"
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_the_openai_client_streams_n_seeded_completions(client):
    plain = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=40, n=3, seed=9)
    texts = ["", "", ""]
    for chunk in client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=40, n=3,
                                           seed=9, stream=True):  # fmt: skip
        for c in chunk.choices:
            texts[c.index] += c.text
    assert texts == [c.text for c in plain.choices]
    assert len(set(texts)) == 3


def test_a_plain_request_whose_client_hangs_up_leaves_the_batch(server):
    body = json.dumps({"model": "tiny", "prompt": "ROMEO:", "max_tokens": LONG}).encode()
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
        wait_until(lambda: metric(server, "charrnn_streams_running", AUTH) == 1, 10, "it to run")
    wait_until(lambda: metric(server, "charrnn_streams_running", AUTH) == 0, 10, "the row to leave")


def test_stopping_the_server_ends_a_stream_with_a_message(runs):
    body = {"model": "tiny", "prompt": "ROMEO:", "max_tokens": LONG, "stream": True}
    with running_server("--out", runs, "--max-tokens", LONG) as (proc, base, lines):
        with httpx.stream("POST", base + "/v1/completions", json=body, timeout=30) as r:
            events = r.iter_lines()
            assert next(events).startswith("data: {")
            proc.send_signal(signal.SIGINT)
            last = [e for e in events if e.startswith("data: ")][-1]
        assert "the server is stopping" in json.loads(last[6:])["error"]["message"]
        assert proc.wait(timeout=30) == 130


def test_the_openai_client_sees_errors_as_its_own_exceptions(server, client):
    with pytest.raises(openai.BadRequestError, match="at most 4"):
        client.completions.create(model="tiny", prompt="R", n=5)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="R")
    wrong = openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model="tiny", prompt="R")


def test_a_client_that_hangs_up_leaves_the_batch(server):
    body = {"model": "tiny", "prompt": "ROMEO:", "max_tokens": LONG, "stream": True}
    url = server + "/v1/completions"
    # leaving the block closes the response mid-stream, and with it the connection
    with httpx.Client(timeout=30) as http, http.stream("POST", url, json=body, headers=AUTH) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        assert metric(server, "charrnn_streams_running", AUTH) == 1
    wait_until(lambda: metric(server, "charrnn_streams_running", AUTH) == 0, 10, "the row to leave")


def test_beyond_the_queue_the_answer_is_429_with_retry_after(server):
    fill = {"model": "tiny", "prompt": "R", "max_tokens": LONG, "stream": True, "n": 4}
    wait = {"model": "tiny", "prompt": "R", "max_tokens": 5}
    url = server + "/v1/completions"
    waited = []
    waiter = threading.Thread(
        target=lambda: waited.append(httpx.post(url, json=wait, headers=AUTH, timeout=30))
    )
    with httpx.Client(timeout=30) as http, http.stream("POST", url, json=fill, headers=AUTH) as r:
        lines = r.iter_lines()  # kept: a dropped line iterator closes the response
        next(lines)
        waiter.start()  # takes the one queue place
        queued = lambda: metric(server, "charrnn_streams_queued", AUTH) == 1  # noqa: E731
        wait_until(queued, 10, "the second request to queue")
        t0 = time.monotonic()
        refused = httpx.post(url, json=wait, headers=AUTH, timeout=30)
        assert refused.status_code == 429 and time.monotonic() - t0 < 5  # at once
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
    waiter.join(timeout=30)
    assert waited[0].status_code == 200  # it ran once the batch had room
    assert metric(server, 'charrnn_requests_refused_total{reason="queue_full"}', AUTH) >= 1
    wait_until(lambda: metric(server, "charrnn_streams_running", AUTH) == 0, 10, "an empty batch")


def test_ctrl_c_stops_the_server_cleanly(runs):
    with running_server("--out", runs) as (proc, base, lines):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    text = "".join(lines)
    assert "stopped" in text and "Traceback" not in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["no-such-run"], "no-such-run is neither a checkpoint, a run folder nor a run under"),
        (["--max-n", "9", "--max-streams", "4"], "--max-n 9 is more than --max-streams 4"),
    ],
)
def test_command_line_errors_are_one_line(runs, run_cli, args, message):
    result = run_cli("serve", "--out", runs, *args, expect=1)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_without_the_serve_extra_the_command_says_what_to_install(runs, run_cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    missing = {"fastapi", "uvicorn"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in missing else real(name, *a))  # fmt: skip
    result = run_cli("serve", "--out", runs, expect=1)
    assert "error: charrnn serve needs fastapi, uvicorn: pip install 'charrnn[serve]'" in (
        result.stderr
    )


def test_a_damaged_checkpoint_stops_the_server_with_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\0" * 100)
    done = subprocess.run(
        charrnn_cmd("serve", bad, "--port", "0"), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.pt" in errors[0] and "Traceback" not in done.stderr


def test_a_port_in_use_is_one_line(runs, run_cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--out", runs, "--port", port, expect=1)
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_public_address_without_a_key_is_warned_about(runs):
    with running_server("--out", runs, "--host", "0.0.0.0") as (proc, base, lines):
        pass
    text = "".join(lines)
    assert "warning: listening on 0.0.0.0 without --api-key" in text


# ------------------------------------------------------------------ load


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def one_client(base: str, deadline: float, outcomes: list, rng: random.Random):
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
        while time.monotonic() < deadline:
            body = {
                "model": "tiny",
                "prompt": "ROMEO:",
                "stream": True,
                "max_tokens": rng.randint(20, 400),
                "temperature": 0.9,
            }
            async with http.stream("POST", base + "/v1/completions", json=body) as r:
                if r.status_code == 429:
                    outcomes.append(429)
                    await asyncio.sleep(float(r.headers["retry-after"]) * rng.random())
                    continue
                last = None
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        last = line[6:]
                outcomes.append(r.status_code if last == "[DONE]" else f"{r.status_code} cut")


async def load(base: str, clients: int, seconds: float) -> list:
    outcomes: list = []
    deadline = time.monotonic() + seconds
    tasks = [one_client(base, deadline, outcomes, random.Random(i)) for i in range(clients)]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
    return outcomes


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_50_streaming_clients_for_20_seconds_are_all_answered(runs):
    args = ["--out", runs, "--max-streams", "16", "--max-n", "4", "--max-queue", "8"]
    with running_server(*args) as (proc, base, lines):
        asyncio.run(load(base, 50, 3))  # warm up: allocator pools, first batches
        before = rss_kib(proc.pid)
        outcomes = asyncio.run(load(base, 50, 20))
        wait_until(lambda: metric(base, "charrnn_streams_running") == 0, 10, "an idle batch")
        after = rss_kib(proc.pid)
    assert set(outcomes) <= {200, 429}, [o for o in outcomes if o not in (200, 429)][:5]
    assert outcomes.count(200) >= 50 and 429 in outcomes  # both served and refused
    assert after - before < 30 * 1024, f"RSS grew {before} -> {after} KiB"
