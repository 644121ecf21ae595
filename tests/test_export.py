"""`charrnn export` without a browser: the folder, the packing, the quantisation, the
SentencePiece reader, and the refusals (tests/test_export_browser.py runs the page)."""

from __future__ import annotations

import io
import json

import pytest
import sentencepiece as spm
import torch
from hypothesis import given
from hypothesis import strategies as st

from charrnn.export import weights
from charrnn.export.folder import export_model
from charrnn.export.pack import PACK_BASE, pack_text, unpack_text
from charrnn.export.weights import dequantize, dequantized_model, int8_rows, pack_weights
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.text.config import TokenizerConfig
from charrnn.text.sentencepiece import train_sentencepiece
from charrnn.text.spmodel import read_sp_model
from charrnn.text.tokenizers import CharVocab
from charrnn.web import runtime_source
from tests.conftest import MIXED_TEXT, TINY_MODEL, invoke, no_loss_plot

RUNTIME_BUDGET = 60 * 1024  # the goal: the runtime at most 60 KB unminified
FOLDER_BUDGET = 1_500_000  # and an int8 export of the demo-size model at most 1.5 MB


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run (its config.json names its corpus, so export finds the
    validation split); returns the checkpoint."""
    root = tmp_path_factory.mktemp("export")
    corpus = root / "corpus.txt"
    corpus.write_text(MIXED_TEXT * 30, encoding="utf-8")
    args = ["train", corpus, *TINY_MODEL, "--max-steps", "30", "--out", root / "ck"]
    with no_loss_plot():
        result = invoke(*args, "--name", "tiny", env={"CHARRNN_CACHE_DIR": str(root / "cache")})
    assert result.exit_code == 0, result.output
    return root / "ck" / "tiny" / "best.pt"


# ------------------------------------------------------------------ the folder


def test_export_writes_a_page_and_says_what_quantising_cost(run, tmp_path):
    result = invoke("export", "--checkpoint", run, "--dtype", "int8", tmp_path / "site")
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "site").iterdir()}
    assert names == {"index.html", "model.js", "manifest.json", "runtime.js", "views.js",
                     "page.js", "style.css", "views.css"}  # fmt: skip
    assert "the validation split of" in result.stderr
    assert "fp32" in result.stderr and "int8" in result.stderr and "nats/char" in result.stderr
    assert result.stdout == ""
    meta = json.loads((tmp_path / "site" / "manifest.json").read_text(encoding="utf-8"))
    assert meta["dtype"] == "int8" and meta["model"]["hidden"] == 32
    assert meta["losses"]["int8"] == pytest.approx(meta["losses"]["fp32"], abs=0.05)
    script = (tmp_path / "site" / "model.js").read_bytes()
    assert script.startswith(b"\xff\xfe")  # UTF-16LE with its byte-order mark


def test_the_runtime_stays_within_its_budget():
    assert len(runtime_source().encode("utf-8")) <= RUNTIME_BUDGET


def test_an_int8_export_of_the_demo_size_model_fits_in_its_budget(tmp_path):
    """A 1x512 LSTM over the demo corpus's 84 characters: the whole folder."""
    vocab = CharVocab("".join(chr(c) for c in range(32, 116)), normalize="nfc")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell="lstm", layers=1, hidden=512))
    ckpt = {"path": str(tmp_path / "run" / "best.pt")}
    report = export_model(model, vocab, ckpt, tmp_path / "site", "int8")
    assert report.total <= FOLDER_BUDGET, report.sizes
    assert report.losses == {}  # no corpus recorded: nothing to measure, and no crash


def test_eval_text_measures_on_the_given_text(run, tmp_path):
    text = tmp_path / "held-out.txt"
    text.write_text(MIXED_TEXT, encoding="utf-8")
    result = invoke("export", "--checkpoint", run, "--eval-text", text, tmp_path / "site")
    assert result.exit_code == 0, result.output
    assert f"loss on {text}" in " ".join(result.stderr.split())


# ------------------------------------------------------------------ refusals


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in " ".join(result.stderr.split())


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint\n")
    one_line_error(invoke("export", "--checkpoint", bad, tmp_path / "site"), "not a charrnn")
    assert not (tmp_path / "site").exists()


class CodeRunner:
    """Unpickling this would create the file `target`: the attack a checkpoint can carry."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_hostile_checkpoint_is_never_unpickled(tmp_path):
    target = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "charrnn", "model": CodeRunner(str(target))}, hostile)
    one_line_error(invoke("export", "--checkpoint", hostile, tmp_path / "site"), "refused")
    assert not target.exists()


def test_a_folder_of_other_files_needs_force(run, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "thesis.tex").write_text("mine\n")
    one_line_error(invoke("export", "--checkpoint", run, site), "--force")
    assert {p.name for p in site.iterdir()} == {"thesis.tex"}
    assert invoke("export", "--checkpoint", run, "--force", site).exit_code == 0
    assert (site / "thesis.tex").read_text() == "mine\n" and (site / "index.html").is_file()


def test_an_earlier_export_is_written_over(run, tmp_path):
    site = tmp_path / "site"
    assert invoke("export", "--checkpoint", run, "--dtype", "fp32", site).exit_code == 0
    result = invoke("export", "--checkpoint", run, "--dtype", "int8", site)
    assert result.exit_code == 0, result.output
    assert json.loads((site / "manifest.json").read_text())["dtype"] == "int8"


def test_a_file_where_the_folder_should_be_is_refused(run, tmp_path):
    (tmp_path / "site").write_text("x")
    one_line_error(invoke("export", "--checkpoint", run, tmp_path / "site"), "is a file")


def test_a_model_the_runtime_cannot_run_is_refused_with_the_reason(run, tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "MAX_PARAMETERS", 100)
    one_line_error(
        invoke("export", "--checkpoint", run, tmp_path / "site"), "parameters", "cannot run"
    )
    assert not (tmp_path / "site").exists()


# ------------------------------------------------------------------ the bytes


@given(st.binary(max_size=200))
def test_packing_round_trips_with_nothing_to_escape(data):
    text = pack_text(data)
    assert unpack_text(text, len(data)) == data
    assert all(PACK_BASE <= ord(c) < PACK_BASE + (1 << 15) for c in text)
    assert len(text) == -(-8 * len(data) // 15)  # 15 bits a unit: 6.7% over raw bytes


def small_model(cell: str = "lstm") -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=11, cell=cell, layers=2, hidden=16, embed=8))


def test_int8_keeps_each_row_within_half_a_step():
    w = torch.randn(6, 40)
    w[2] = 0  # a row of zeros must not divide by zero
    q, scales = int8_rows(w)
    assert q.abs().max() <= 127 and scales[2] == 1
    error = (q.float() * scales[:, None] - w).abs()
    assert (error <= scales[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8"])
def test_the_dequantised_model_is_what_the_bytes_say(dtype):
    model = small_model()
    packed = pack_weights(model, dtype)
    tensors = dequantize(packed)
    twin = dequantized_model(model, packed)
    assert torch.equal(twin.rnn.weight_hh_l1, tensors["l1.w_hh"])
    assert torch.equal(twin.head.bias, model.head.bias)  # biases stay float32
    close = {"fp32": 0, "fp16": 1e-3, "int8": 2e-2}[dtype]
    assert (twin.embed.weight - model.embed.weight).abs().max() <= close
    if dtype == "fp32":
        pairs = zip(twin.parameters(), model.parameters(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    assert all(t["offset"] % 4 == 0 for t in packed.tensors)


# ------------------------------------------------------------------ SentencePiece's model


@pytest.mark.parametrize("sp_type", ["unigram", "bpe"])
def test_the_piece_types_and_settings_are_read_from_the_model(sp_type):
    lines = (MIXED_TEXT * 20).splitlines()
    vocab = train_sentencepiece(lines, TokenizerConfig("sentencepiece", sp_type=sp_type,
                                                       vocab_size=330), "nfc", False)  # fmt: skip
    info = read_sp_model(vocab.model)
    sp = vocab.sp
    assert len(info.pieces) == len(vocab)
    assert info.model_type == sp_type and info.byte_fallback and not info.add_dummy_prefix
    for i, (piece, score, kind) in enumerate(info.pieces):
        assert piece == sp.id_to_piece(i) and score == pytest.approx(sp.get_score(i))
        assert (kind == 6) == sp.is_byte(i) and (kind == 2) == sp.is_unknown(i)
        assert (kind == 3) == sp.is_control(i)
    assert [kind for piece, _, kind in info.pieces if piece == "\n"] == [4]  # user-defined


def test_a_dummy_prefix_is_read_where_a_model_has_one():
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(MIXED_TEXT.splitlines() * 20),
                                   model_writer=model, vocab_size=75, minloglevel=2)  # fmt: skip
    info = read_sp_model(model.getvalue())
    assert info.add_dummy_prefix and not info.byte_fallback and info.model_type == "unigram"


def test_a_damaged_sentencepiece_model_is_an_error_not_a_crash():
    from charrnn.errors import CharrnnError

    with pytest.raises(CharrnnError, match="damaged"):
        read_sp_model(b"\x0a\xff\xff\xff\x0f")  # a field longer than the data


def test_a_sentencepiece_model_the_runtime_cannot_mirror_is_refused(tmp_path):
    """SentencePiece's default NFKC rule and whitespace folding: not charrnn's, refused."""
    from charrnn.errors import CharrnnError
    from charrnn.text.sentencepiece import SentencePieceVocab

    written = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(MIXED_TEXT.splitlines() * 20),
                                   model_writer=written, vocab_size=75, minloglevel=2)  # fmt: skip
    vocab = SentencePieceVocab(written.getvalue())
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden=16, embed=8))
    with pytest.raises(CharrnnError, match="cannot mirror .* nmt_nfkc normalisation"):
        export_model(model, vocab, {"path": str(tmp_path / "r" / "best.pt")}, tmp_path / "site")
    assert not (tmp_path / "site").exists()
