"""`charrnn export`'s page in a real browser (Debian's Chromium, see tests/browsing.py),
opened from file:// as a double-click opens it, against the PyTorch model it came from.

Every cell type (LSTM, GRU, RNN) x tokenizer (char, byte, SentencePiece unigram and
BPE) x 1 and 3 layers, each a tiny model trained here on English, Korean and emoji.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("playwright.sync_api")

import charrnn  # noqa: E402
from charrnn.evaluate import score_text  # noqa: E402
from charrnn.export.folder import export_model  # noqa: E402
from charrnn.trace import KINDS  # noqa: E402
from tests.browsing import launched_chromium  # noqa: E402
from tests.conftest import MIXED_TEXT, invoke, no_loss_plot  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

CELLS = ("lstm", "gru", "rnn")
SP = ["--tokenizer", "sentencepiece", "--vocab-size", "330", "--sp-type"]
TOKENIZERS = {
    "char": [],
    "byte": ["--tokenizer", "byte"],
    "unigram": [*SP, "unigram"],
    "bpe": [*SP, "bpe"],
}
CASES = [(c, t, n) for c in CELLS for t in TOKENIZERS for n in (1, 3)]
SEEDS = ("ROMEO:", "줄리엣: ")  # English, and Korean
TEXT = MIXED_TEXT[:140]  # English, Korean, an emoji and a ZWJ sequence
CLOSE = 1e-4  # what the issue asks: nats and unit values within 1e-4 of PyTorch's


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """case -> the checkpoint of a tiny model trained for it (trained on first use)."""
    root = tmp_path_factory.mktemp("export")
    corpus = root / "corpus.txt"
    corpus.write_text(MIXED_TEXT * 30, encoding="utf-8")
    made = {}

    def checkpoint(cell: str, tokenizer: str, layers: int) -> Path:
        name = f"{cell}-{tokenizer}-{layers}"
        if name not in made:
            args = ["train", corpus, "--cell", cell, "--layers", str(layers)]
            args += [*TOKENIZERS[tokenizer], "--hidden", "24", "--embed", "8"]
            args += ["--batch-size", "4", "--seq-len", "16"]
            args += ["--max-steps", "40", "--eval-every", "20", "--lr", "1e-2"]
            args += ["--out", root / "ck", "--name", name]
            with no_loss_plot():
                result = invoke(*args, env={"CHARRNN_CACHE_DIR": str(root / "cache")})
            assert result.exit_code == 0, result.output
            made[name] = root / "ck" / name / "best.pt"
        return made[name]

    return checkpoint


def export(checkpoint: Path, folder: Path, dtype: str = "fp32") -> Path:
    result = invoke("export", "--checkpoint", checkpoint, "--dtype", dtype, folder)
    assert result.exit_code == 0, result.output
    return folder


def open_page(browser, folder: Path, init_script: str | None = None):
    """The exported page from file://, once it has opened its model; page errors and
    every request it makes are kept on the page object."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.errors, page.requests = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    if init_script:
        page.add_init_script(init_script)
    page.goto((folder / "index.html").as_uri())
    page.wait_for_function("window.charrnnModel || document.querySelector('#status.error')")
    assert page.errors == []
    return page


def js_generate(page, seed: str, **options) -> str:
    return page.evaluate("([s, o]) => charrnnModel.generate(s, o)", [seed, options])


def js_score(page, text: str) -> dict:
    return page.evaluate("t => charrnnModel.score(t, {top: 5})", text)


def js_trace(page, text: str, layer: int, kind: str) -> np.ndarray:
    values = page.evaluate(
        "([t, layer, kind]) => charrnnModel.trace(t, {layer, kind})"
        ".then(r => r.values.map(a => Array.from(a)))",
        [text, layer, kind],
    )
    return np.array(values, dtype=np.float64)


# ------------------------------------------------------------------ exactly PyTorch's model


@pytest.mark.parametrize("cell,tokenizer,layers", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_the_page_runs_exactly_the_model_pytorch_trained(
    browser, trained, tmp_path, cell, tokenizer, layers
):
    checkpoint = trained(cell, tokenizer, layers)
    page = open_page(browser, export(checkpoint, tmp_path / "site"))
    model = charrnn.load(checkpoint, device="cpu")

    for seed in SEEDS:  # greedy text, the seed read and every step taken as PyTorch does
        expected = "".join(model.generate(seed, length=60, temperature=0))
        assert js_generate(page, seed, length=60, temperature=0) == expected

    scored = js_score(page, TEXT)
    assert [p["id"] for p in scored["pieces"]] == model.vocab.encode(TEXT).tolist()
    assert scored["natsPerToken"] == pytest.approx(model.score(TEXT), abs=CLOSE)
    per_char = score_text(model.model, model.vocab, TEXT).bits_per_char * math.log(2)
    assert scored["natsPerChar"] == pytest.approx(per_char, abs=CLOSE)
    assert "".join(p["text"] for p in scored["pieces"]) == scored["text"]
    ascii_only = js_score(page, "ROMEO: But soft")  # one byte a character: per token
    per_char = score_text(model.model, model.vocab, "ROMEO: But soft").bits_per_char
    assert ascii_only["natsPerChar"] == pytest.approx(per_char * math.log(2), abs=CLOSE)
    if tokenizer != "char":  # characters the corpus never had: bytes, or byte fallback
        unseen = "新しい ∰ text,  two spaces\tand a tab"
        assert [p["id"] for p in js_score(page, unseen)["pieces"]] == model.vocab.encode(
            unseen
        ).tolist()

    for layer in sorted({0, layers - 1}):
        for kind in KINDS[cell]:
            got, expected = js_trace(page, TEXT, layer, kind), model.trace(TEXT, layer, kind)
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() < CLOSE, (layer, kind)
    assert page.evaluate("charrnnModel.info.runsIn") == "worker"
    assert page.errors == []


def test_sampling_with_a_random_seed_repeats_and_follows_the_options(browser, trained, tmp_path):
    page = open_page(browser, export(trained("lstm", "char", 1), tmp_path / "site"))
    options = {"length": 200, "temperature": 1.0, "topK": 5, "rngSeed": 7}
    first = js_generate(page, "ROMEO:", **options)
    assert js_generate(page, "ROMEO:", **options) == first
    assert js_generate(page, "ROMEO:", **{**options, "rngSeed": 8}) != first
    assert len(first) == 200
    stopped = js_generate(page, "ROMEO:", **{**options, "stop": ["\n"], "length": 2000})
    assert "\n" not in stopped and len(stopped) < 2000
    assert js_generate(page, "ROMEO:", **{**options, "stop": "\n", "length": 2000}) == stopped


def test_calls_that_overlap_keep_their_own_state(browser, tmp_path):
    """A score while a generation streams (the views beside the generator): each
    pauses for the other and neither disturbs the other's state. The model has large
    random weights, so its state matters at every step and any disturbance shows."""
    from charrnn.model.config import ModelConfig
    from charrnn.model.rnn import CharRNN
    from charrnn.text.tokenizers import CharVocab

    torch.manual_seed(0)
    vocab = CharVocab.from_text(MIXED_TEXT, normalize="nfc")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden=64, embed=8)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    export_model(model, vocab, {"path": str(tmp_path / "run" / "best.pt")}, tmp_path / "site")
    page = open_page(browser, tmp_path / "site")
    options = {"length": 100_000, "temperature": 1.0, "rngSeed": 3}
    alone = js_generate(page, "ROMEO:", **options)
    together = page.evaluate(
        """async ([text, options]) => {
            const generating = charrnnModel.generate("ROMEO:", options);
            const scores = [];
            for (let i = 0; i < 5; i++) {
                await new Promise((r) => setTimeout(r, 20));
                scores.push((await charrnnModel.score(text)).natsPerToken);
            }
            return [await generating, scores];
        }""",
        [TEXT, options],
    )
    assert together[0] == alone
    expected = score_text(model, vocab, TEXT).loss
    assert together[1] == pytest.approx([expected] * 5, abs=CLOSE)


def test_the_plain_javascript_kernel_gives_what_the_simd_one_gives(browser, trained, tmp_path):
    """The other branch of the WebAssembly probe: the page told not to use it."""
    checkpoint = trained("gru", "char", 3)
    page = open_page(browser, export(checkpoint, tmp_path / "site"))
    assert page.evaluate("charrnnModel.info.kernel") == "wasm-simd"
    simd = js_score(page, TEXT)
    page.evaluate(
        "async () => { window.charrnnModel = await charrnn.openExport("
        "self.charrnnExport, {wasm: false}); }"
    )
    assert page.evaluate("charrnnModel.info.kernel") == "js"
    plain = js_score(page, TEXT)
    assert plain["natsPerToken"] == pytest.approx(simd["natsPerToken"], abs=CLOSE)
    model = charrnn.load(checkpoint, device="cpu")
    expected = "".join(model.generate("ROMEO:", length=60, temperature=0))
    assert js_generate(page, "ROMEO:", length=60, temperature=0) == expected


def test_a_browser_without_simd_a_worker_or_subtle_crypto_still_runs_the_model(
    browser, trained, tmp_path
):
    """Each of the page's probes answering no, as an older or locked-down browser would:
    WebAssembly SIMD does not validate, no worker can be made, no crypto.subtle (the
    sha256 check is skipped). The model runs in the page, on the JavaScript kernel."""
    checkpoint = trained("lstm", "char", 1)
    page = open_page(
        browser,
        export(checkpoint, tmp_path / "site"),
        "WebAssembly.validate = () => false; delete window.Worker;"
        "Object.defineProperty(Crypto.prototype, 'subtle', {get: () => undefined});",
    )
    assert page.evaluate("charrnnModel.info.kernel") == "js"
    assert page.evaluate("charrnnModel.info.runsIn") == "page"
    assert page.evaluate("window.crypto.subtle === undefined")
    model = charrnn.load(checkpoint, device="cpu")
    expected = "".join(model.generate("ROMEO:", length=60, temperature=0))
    assert js_generate(page, "ROMEO:", length=60, temperature=0) == expected


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
def test_smaller_weights_compute_what_python_says_they_do(browser, trained, tmp_path, dtype):
    """The page's loss with fp16 or int8 weights is the loss export reported for them."""
    checkpoint = trained("lstm", "char", 3)
    model = charrnn.load(checkpoint, device="cpu")
    folder = tmp_path / dtype
    net, vocab, ckpt = charrnn.checkpoint.open_model(checkpoint, "cpu")
    report = export_model(net, vocab, ckpt, folder, dtype, eval_text=None)
    page = open_page(browser, folder)
    ids = np.asarray(model.vocab.encode(TEXT), dtype=np.int64)
    from charrnn.evaluate import evaluate
    from charrnn.export.weights import dequantized_model, pack_weights

    twin = dequantized_model(model.model, pack_weights(model.model, dtype))
    expected = evaluate(twin, ids, torch.device("cpu"))
    assert js_score(page, TEXT)["natsPerToken"] == pytest.approx(expected, abs=CLOSE)
    assert page.evaluate("charrnnModel.info.dtype") == dtype
    assert set(report.losses) == {"fp32", dtype}  # the run's validation split, found


# ------------------------------------------------------------------ the page itself


def output(page) -> str:
    return page.locator("#output-text").text_content()


def wait_for_growth(page, than: int) -> None:
    page.wait_for_function(
        "n => document.getElementById('output-text').textContent.length > n", arg=than
    )


@pytest.mark.parametrize("worker", [True, False], ids=["worker", "no-worker"])
def test_stop_stops_generation_mid_stream(browser, trained, tmp_path, worker):
    """In a worker, or in the page where the browser gives no worker (the fallback)."""
    no_worker = None if worker else "delete window.Worker;"
    page = open_page(browser, export(trained("lstm", "char", 1), tmp_path / "site"), no_worker)
    assert page.evaluate("charrnnModel.info.runsIn") == ("worker" if worker else "page")
    assert ("worker" if worker else "page") in page.locator("#status").text_content()
    page.get_by_label("Seed", exact=True).fill("줄리엣: ")
    # far more than the tiny model could make before Stop (it makes ~10^5 chars/s)
    page.eval_on_selector("#length", "el => { el.max = 1e9; el.value = 1e9; }")
    page.get_by_role("button", name="Generate").click()
    wait_for_growth(page, 50)
    first = len(output(page))
    wait_for_growth(page, first + 50)  # still coming: the page stays responsive meanwhile
    page.get_by_role("button", name="Stop").click()
    page.wait_for_function("document.getElementById('status').textContent === 'Stopped.'")
    stopped = output(page)
    page.wait_for_timeout(300)
    assert output(page) == stopped and len(stopped) < 1e9
    assert "chars/s" in page.locator("#speed").text_content()
    assert page.get_by_role("button", name="Generate").is_enabled()


def test_the_page_makes_no_network_request(browser, trained, tmp_path):
    page = open_page(browser, export(trained("rnn", "byte", 1), tmp_path / "site"))
    js_generate(page, "ROMEO:", length=50)
    js_score(page, TEXT)
    schemes = {url.split(":", 1)[0] for url in page.requests}
    assert schemes <= {"file", "blob"}, page.requests


def test_damaged_weights_are_refused_with_a_message(browser, trained, tmp_path):
    folder = export(trained("lstm", "char", 1), tmp_path / "site")
    script = (folder / "model.js").read_bytes().decode("utf-16-le")
    at = script.index('"weights":"') + 20
    flipped = chr(ord(script[at]) ^ 1)
    damaged = script[:at] + flipped + script[at + 1 :]
    (folder / "model.js").write_bytes(damaged.encode("utf-16-le"))
    page = open_page(browser, folder)
    assert "sha256" in page.locator("#status.error").text_content()
    assert page.evaluate("window.charrnnModel") is None


def test_errors_reach_the_caller_as_one_line(browser, trained, tmp_path):
    page = open_page(browser, export(trained("gru", "char", 1), tmp_path / "site"))
    unknown = page.evaluate("charrnnModel.generate('∰', {}).catch(e => e.message)")
    assert "never saw" in unknown and "\n" not in unknown
    kind = page.evaluate("charrnnModel.trace('ROMEO', {kind: 'forget'}).catch(e => e.message)")
    assert "GRU has no forget" in kind


@pytest.mark.parametrize("sp_type", ["unigram", "bpe"])
def test_sentencepiece_models_charrnn_did_not_train_encode_alike(browser, tmp_path, sp_type):
    """A dummy prefix and no byte fallback (<unk> instead), SentencePiece's defaults (with
    the identity rule, which the runtime needs): the JS encoder gives the library's ids."""
    import io

    import sentencepiece as spm

    from charrnn.model.config import ModelConfig
    from charrnn.model.rnn import CharRNN
    from charrnn.text.sentencepiece import SentencePieceVocab

    written = io.BytesIO()
    lines = [*MIXED_TEXT.splitlines(), "aaaa bbbb aaaa"] * 20  # runs: where BPE has ties
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=written, vocab_size=75, minloglevel=2,
        model_type=sp_type,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
    )  # fmt: skip
    vocab = SentencePieceVocab(written.getvalue())
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden=16, embed=8)).eval()
    export_model(model, vocab, {"path": str(tmp_path / "run" / "best.pt")}, tmp_path / "site")
    page = open_page(browser, tmp_path / "site")
    texts = (TEXT, "  two spaces, ∰ unknown, 新しい", "줄리엣: 🌹 ROMEO", "aaaaaaa bbbbbbb", "a▁b")
    for text in texts:
        pieces = js_score(page, text)["pieces"]
        assert [p["id"] for p in pieces] == vocab.encode(text).tolist(), text


def test_the_views_show_what_pytorch_computes(browser, trained, tmp_path):
    """The numbers in the exported page's DOM: each character's surprisal, the total,
    a unit's values, and the search's correlation, each against PyTorch's."""
    checkpoint = trained("lstm", "char", 3)
    model = charrnn.load(checkpoint, device="cpu")
    page = open_page(browser, export(checkpoint, tmp_path / "site"))
    text = "ROMEO: But soft! 줄리엣: 이름이 무슨 상관이에요? 🌹\nNURSE: Madam!"

    page.locator("#surprisal-text").fill(text)
    page.locator("#surprisal-run").click()
    total = page.locator("#surprisal-total[data-nats-per-char]")
    total.wait_for()
    assert float(total.get_attribute("data-nats-per-char")) == pytest.approx(
        model.score(text), abs=CLOSE
    )
    ids = torch.as_tensor(model.vocab.encode(text).astype(np.int64))
    logits = model.model(ids[None])[0][0]
    expected = -logits.log_softmax(-1)[:-1].gather(1, ids[1:, None])[:, 0]
    shown = page.locator("#surprisal-output span[data-nats]").evaluate_all(
        "spans => spans.map(s => Number(s.dataset.nats))"
    )
    assert shown == pytest.approx(expected.tolist(), abs=CLOSE)
    page.locator("#surprisal-output span[data-nats]").nth(3).hover()
    assert page.locator("#surprisal-tip li.cv-pred").count() == 5

    page.locator("#neurons-text").fill(text)
    page.locator("#neurons-layer").select_option("2")
    page.locator("#neurons-kind").select_option("forget")
    page.locator("#neurons-unit").fill("7")
    page.locator("#neurons-run").click()
    page.locator("#neurons-output span[data-value]").first.wait_for()
    values = page.locator("#neurons-output span[data-value]").evaluate_all(
        "spans => spans.map(s => Number(s.dataset.value))"
    )
    gates = model.trace(text, 2, "forget")
    assert values == pytest.approx(gates[:, 7].tolist(), abs=CLOSE)

    page.locator("#neurons-pattern").fill("[가-힣]+")  # "inside a Korean word"
    page.locator("#neurons-search").click()
    best = page.locator(".neurons-hit").first
    best.wait_for()
    unit, r = int(best.get_attribute("data-unit")), float(best.get_attribute("data-r"))
    inside = np.array([0xAC00 <= ord(c) <= 0xD7A3 for c in text], dtype=float)
    correlations = [np.corrcoef(gates[:, u], inside)[0, 1] for u in range(gates.shape[1])]
    strongest = int(np.nanargmax(np.abs(correlations)))
    assert unit == strongest and r == pytest.approx(correlations[strongest], abs=1e-3)


def test_a_byte_models_surprisal_view_counts_every_byte(browser, trained, tmp_path):
    """The leading bytes of a Korean character show nothing of their own: their nats go
    to the character, so the colours add up to the whole text's."""
    page = open_page(browser, export(trained("gru", "byte", 1), tmp_path / "site"))
    page.locator("#surprisal-text").fill(TEXT)
    page.locator("#surprisal-run").click()
    total = page.locator("#surprisal-total[data-nats-per-token]")
    total.wait_for()
    shown = page.locator("#surprisal-output span[data-nats]").evaluate_all(
        "spans => spans.map(s => Number(s.dataset.nats))"
    )
    tokens = len(TEXT.encode("utf-8")) - 1
    assert sum(shown) == pytest.approx(float(total.get_attribute("data-nats-per-token")) * tokens)
    assert len(shown) == len(TEXT) - 1  # one coloured span a character (the first has none)
