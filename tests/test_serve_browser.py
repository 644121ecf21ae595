"""The playground page in a real browser: headless Chromium (Debian's package, see
tests/browsing.py) driven by Playwright, against `charrnn serve` on 127.0.0.1."""

from __future__ import annotations

import subprocess

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright.sync_api")

from tests import browsing  # noqa: E402
from tests.browsing import CHROMIUM, ensure_chromium, launched_chromium  # noqa: E402
from tests.serving import metric, running_server, train_tiny_run, wait_until  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]
SEED = "줄리엣: 🌹"  # Korean and an emoji, both in the tiny model's text


def test_the_set_up_installs_chromium_where_it_can_and_skips_where_not(monkeypatch):
    """Both branches of the probe, whatever this machine has: CI installs, a laptop skips."""
    import types

    ran, present = [], []
    monkeypatch.setattr(browsing, "chromium_present", lambda: bool(present))
    monkeypatch.setattr(browsing, "can_install", lambda: True)

    def fake_run(cmd, **kw):  # the first install fails, as on a machine without lists
        ran.append(cmd[:2])
        ok = cmd[1] == "update" or len(ran) > 1
        if ok and cmd[1] == "install":
            present.append(True)
        return types.SimpleNamespace(returncode=0 if ok else 100, stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert ensure_chromium() == CHROMIUM
    assert ran == [["apt-get", "install"], ["apt-get", "update"], ["apt-get", "install"]]
    monkeypatch.setattr(browsing, "can_install", lambda: False)
    present.clear()
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        ensure_chromium()


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def server(runs):
    with running_server("--out", runs, "--max-tokens", "1000000") as (proc, base, lines):
        yield base


def output_text(page) -> str:
    return page.locator("#output").text_content()


def test_generate_streams_text_and_stop_stops_it_on_the_server(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(server + "/")
    page.get_by_label("Model", exact=True).select_option("tiny")  # labels name every control
    assert page.locator("#key-field").is_hidden()  # no key asked for where none is needed
    assert "bits/char" in page.locator("#model-card").text_content()
    page.get_by_label("Seed", exact=True).fill(SEED)
    # a longer length than the slider offers, so the text is still coming when Stop is pressed
    page.eval_on_selector(
        "#length",
        "el => { el.max = 1000000; el.value = 1000000; el.dispatchEvent(new Event('input')); }",
    )
    page.get_by_role("button", name="Generate").click()

    wait_until(lambda: len(output_text(page)) > len(SEED) + 50, 20, "text to appear")
    first = output_text(page)
    assert first.startswith(SEED)
    wait_until(lambda: len(output_text(page)) > len(first) + 50, 20, "the text to grow")
    assert metric(server, "charrnn_streams_running") == 1

    page.get_by_role("button", name="Stop").click()
    wait_until(lambda: metric(server, "charrnn_streams_running") == 0, 10, "the stream to leave")
    wait_until(lambda: "Stopped" in page.locator("#status").text_content(), 5, "'Stopped.'")
    stopped = output_text(page)
    page.wait_for_timeout(300)
    assert output_text(page) == stopped  # nothing more arrives
    assert page.get_by_role("button", name="Copy").is_enabled()
    page.locator("#curve polyline.val").wait_for(timeout=5000)  # the loss curve is drawn
    shot = tmp_path / "playground.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_the_keyboard_alone_generates_and_stops(browser, server):
    page = browser.new_page()
    page.goto(server + "/")
    page.locator("#model option").first.wait_for(state="attached", timeout=20_000)
    page.get_by_label("Seed", exact=True).fill("ROMEO:")
    page.eval_on_selector("#length", "el => { el.max = 1000000; el.value = 1000000; }")
    page.get_by_label("Seed", exact=True).press("Control+Enter")
    wait_until(lambda: len(output_text(page)) > 100, 20, "text to appear")
    page.keyboard.press("Escape")
    wait_until(lambda: metric(server, "charrnn_streams_running") == 0, 10, "the stream to leave")
    assert page.evaluate("document.activeElement.id") == "seed"
    page.keyboard.press("Tab")  # focus moves on to the next control
    assert page.evaluate("document.activeElement.id") == "temperature"


def test_the_page_asks_for_the_api_key_when_the_server_wants_one(browser, tmp_path):
    runs = train_tiny_run(tmp_path)
    with running_server("--out", runs, env={"CHARRNN_API_KEY": "k3y"}) as (proc, base, lines):
        page = browser.new_page()
        page.goto(base + "/")
        key = page.get_by_label("API key", exact=True)
        key.wait_for(state="visible", timeout=20_000)  # shown after the 401
        key.fill("k3y")
        key.press("Enter")  # submits the form: the key is kept and the models listed
        page.locator("#model option").first.wait_for(state="attached", timeout=20_000)
        assert page.locator("#model").input_value() == "tiny"


def test_the_playground_looks_inside_the_served_model(browser, server, runs):
    """The views run the served model's own weights in the page, as an export's do: the
    numbers in the DOM are PyTorch's."""
    import charrnn

    model = charrnn.load(runs / "tiny" / "best.pt", device="cpu")
    text = "ROMEO: 줄리엣: 이름이 무슨 상관이에요? 🌹"
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_function("window.charrnnModel && charrnnModel.info")
    assert "when a view first needs them" in page.locator("#inside-status").text_content()

    page.locator("#surprisal-text").fill(text)
    page.locator("#surprisal-run").click()
    total = page.locator("#surprisal-total[data-nats-per-char]")
    total.wait_for(timeout=20_000)
    assert float(total.get_attribute("data-nats-per-char")) == pytest.approx(
        model.score(text), abs=1e-4
    )
    assert "runs in this page (worker" in page.locator("#inside-status").text_content()
    spans = page.locator("#surprisal-output span[data-nats]")
    ids = model.vocab.encode(text)
    last = model.model(__import__("torch").as_tensor(ids[None].astype("int64")))[0][0]
    expected = -last.log_softmax(-1)[len(ids) - 2, ids[-1]].item()  # the last character's
    assert float(spans.last.get_attribute("data-nats")) == pytest.approx(expected, abs=1e-4)

    page.locator("#neurons-text").fill(text)
    page.locator("#neurons-layer").select_option("0")
    page.locator("#neurons-kind").select_option("cell")
    page.locator("#neurons-unit").fill("5")
    page.locator("#neurons-run").click()
    page.locator("#neurons-output span[data-value]").first.wait_for(timeout=20_000)
    shown = [float(v) for v in page.locator("#neurons-output span[data-value]").evaluate_all(
        "spans => spans.map(s => s.dataset.value)"
    )]  # fmt: skip
    assert shown == pytest.approx(model.trace(text, 0, "cell")[:, 5].tolist(), abs=1e-4)
    assert errors == []
