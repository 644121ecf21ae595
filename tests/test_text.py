"""Corpus files -> prepared text -> ids: encodings, compression, folders, line ends,
normalisation, chunk boundaries, the cache, and <unk> accounting."""

import bz2
import gzip
import json
import lzma
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charrnn.data.encode
import charrnn.text.sources
from charrnn.data.cache import load_corpus
from charrnn.errors import CorpusError
from charrnn.text.base import prepare_text
from charrnn.text.config import TextConfig, TokenizerConfig
from charrnn.text.sources import corpus_text, file_text
from tests.conftest import MIXED_TEXT, TINY_MODEL, examples

KOREAN = "대한민국은 민주공화국이다.\n모든 국민은 인간으로서의 존엄과 가치를 가진다.\n"


def text_of(corpus) -> str:
    return corpus.vocab.decode(corpus.ids)


def test_nfc_and_nfd_files_give_the_same_ids(write_corpus):
    nfc = unicodedata.normalize("NFC", KOREAN + "café\n")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd  # Hangul syllables and é decompose
    a = load_corpus(write_corpus(nfc, "nfc.txt"))
    b = load_corpus(write_corpus(nfd, "nfd.txt"))
    assert a.vocab == b.vocab and np.array_equal(a.ids, b.ids)
    raw = load_corpus(write_corpus(nfd, "nfd.txt"), TextConfig(normalize="none"))
    assert not raw.from_cache  # another option, another cache entry
    assert text_of(raw) == nfd and raw.vocab != a.vocab


def test_crlf_and_cr_become_lf_unless_kept(write_corpus):
    path = write_corpus(b"one\r\ntwo\rthree\n\r\n")
    assert text_of(load_corpus(path)) == "one\ntwo\nthree\n\n"
    kept = load_corpus(path, TextConfig(keep_line_ends=True))
    assert text_of(kept) == "one\r\ntwo\rthree\n\r\n"


@settings(max_examples=examples(3), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(alphabet=st.sampled_from(list("ab \r\n한e\u0301\u1100\u1161\u11a8🌹")), max_size=200),
    st.integers(1, 9),
    st.sampled_from(["nfc", "nfkc", "none"]),
)
def test_chunk_boundaries_never_change_the_text(tmp_path, text, chunk, form):
    """CR|LF, e|U+0301 and Hangul jamo split across chunks read as if whole."""
    path = tmp_path / "chunked.txt"
    path.write_bytes(text.encode("utf-8"))
    config = TextConfig(normalize=form)
    got = "".join(file_text(path, config, chunk_bytes=chunk)) if text else ""
    assert got == prepare_text(text, form, keep_line_ends=False)


def test_invalid_utf8_names_the_byte_offset_across_chunks(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("é".encode() * 10 + b"\xe2\x82" + b" tail")  # offset 20
    for chunk in (1, 3, 7, 64):
        with pytest.raises(
            CorpusError, match=r"not valid UTF-8 at byte offset 20 \(bytes e2 82 20"
        ):
            "".join(file_text(path, TextConfig(), chunk_bytes=chunk))
    replaced = "".join(file_text(path, TextConfig(errors="replace")))
    assert replaced == "é" * 10 + "\ufffd tail"


def test_other_encodings_with_a_hint(write_corpus):
    latin = write_corpus("café crème\n".encode("latin-1"), "latin.txt")
    with pytest.raises(CorpusError, match="name its encoding with --encoding"):
        load_corpus(latin)
    assert text_of(load_corpus(latin, TextConfig(encoding="latin-1"))) == "café crème\n"

    utf16 = write_corpus("한국어 text\n".encode("utf-16"), "wide.txt")
    with pytest.raises(CorpusError, match="looks like UTF-16.*pass --encoding utf-16"):
        load_corpus(utf16)
    assert text_of(load_corpus(utf16, TextConfig(encoding="utf-16"))) == "한국어 text\n"


def test_binary_files_are_refused(write_corpus):
    path = write_corpus(b"\x7fELF\x02\x01\x01\x00\x00\x00binary")
    with pytest.raises(
        CorpusError, match=r"looks like a binary file \(NUL bytes at byte offset 7\)"
    ):
        load_corpus(path)


def test_a_folder_is_its_txt_files_sorted_and_joined_by_a_blank_line(tmp_path):
    folder = tmp_path / "plays"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("bee\n", encoding="utf-8")
    (folder / "a.txt").write_text("ay", encoding="utf-8")  # no final newline
    (folder / "sub" / "c.txt").write_text("sea\n\n", encoding="utf-8")
    (folder / "notes.md").write_text("not a corpus file", encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    corpus = load_corpus(folder)
    assert text_of(corpus) == "ay\n\nbee\n\nsea\n\n"
    assert "4 files" in corpus.path
    assert np.array_equal(load_corpus([folder]).ids, corpus.ids)


@pytest.mark.parametrize(
    "suffix,compress",
    [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)],
)
def test_compressed_corpora_read_like_plain_ones(tmp_path, suffix, compress):
    text = (MIXED_TEXT * 5).encode("utf-8")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(text)
    packed = tmp_path / f"packed.txt{suffix}"
    packed.write_bytes(compress(text))
    a, b = load_corpus(plain), load_corpus(packed)
    assert a.vocab == b.vocab and np.array_equal(a.ids, b.ids)


def test_a_damaged_compressed_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.txt.gz"
    packed = gzip.compress(MIXED_TEXT.encode("utf-8") * 3)
    assert len(packed) > 100
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(CorpusError, match="broken.txt.gz: the compressed file is damaged"):
        load_corpus(path)


def test_encoding_without_keeping_code_points_gives_the_same_ids(write_corpus, monkeypatch):
    """Past RETAIN_BYTES the text is read a second time instead of kept: same result."""
    path = write_corpus(MIXED_TEXT * 40)
    kept = load_corpus(path, cache_dir=path.parent / "c1")
    monkeypatch.setattr(charrnn.data.encode, "RETAIN_BYTES", 0)
    monkeypatch.setattr(charrnn.text.sources, "CHUNK_BYTES", 1000)
    reread = load_corpus(path, cache_dir=path.parent / "c2")
    assert kept.vocab == reread.vocab and np.array_equal(kept.ids, reread.ids)
    assert isinstance(reread.ids, np.memmap) and not reread.ids.flags.writeable


def test_min_count_maps_rare_characters_to_unk(write_corpus):
    text = "ab" * 50 + "xyz" + "x"  # x: 2 times, y and z: once
    corpus = load_corpus(write_corpus(text), tokenizer=TokenizerConfig(min_count=3))
    vocab = corpus.vocab
    assert vocab.chars == "ab" and vocab.unk and len(vocab) == 3
    assert corpus.rare.distinct == 3 and corpus.rare.occurrences == 4
    assert corpus.rare.share == pytest.approx(4 / len(text))
    assert int((corpus.ids == vocab.unk_id).sum()) == 4
    cached = load_corpus(write_corpus(text), tokenizer=TokenizerConfig(min_count=3))
    assert cached.from_cache and cached.rare == corpus.rare


def test_byte_and_sentencepiece_corpora(write_corpus):
    path = write_corpus(KOREAN * 30)
    byte = load_corpus(path, tokenizer=TokenizerConfig(kind="byte"))
    assert len(byte) == len((KOREAN * 30).encode("utf-8")) and byte.characters == len(KOREAN * 30)
    assert text_of(byte) == KOREAN * 30
    sp = load_corpus(path, tokenizer=TokenizerConfig(kind="sentencepiece", sp_type="char"))
    assert text_of(sp) == KOREAN * 30 and len(sp) == len(KOREAN * 30)  # char pieces: 1 per char


def test_the_corpus_text_joins_and_reports_progress(tmp_path):
    for name, text in (("1.txt", "x" * 5000), ("2.txt", "y" * 3000)):
        (tmp_path / name).write_text(text)
    done = []
    files = [tmp_path / "1.txt", tmp_path / "2.txt"]
    text = "".join(corpus_text(files, TextConfig(), chunk_bytes=1024, on_bytes=done.append))
    assert text == "x" * 5000 + "\n\n" + "y" * 3000
    assert sum(done) == 8000


# ---------------------------------------------------------------- through the CLI


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "content,message",
    [
        (b"GIF89a\x01\x00\x00\x00", "looks like a binary file"),
        ("utf16 text".encode("utf-16"), "pass --encoding utf-16"),
        (b"caf\xe9\n", "not valid UTF-8 at byte offset 3 (bytes e9 0a); name its encoding"),
    ],
)
def test_unreadable_corpora_through_the_cli(tmp_path, run_cli, content, message):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    result = run_cli("train", path, *TINY_MODEL, "--out", tmp_path / "ck", expect=1)
    assert message in one_line_error(result)
    assert not (tmp_path / "ck").exists()


def test_min_count_report_and_unk_sampling_through_the_cli(tmp_path, run_cli, write_corpus):
    text = MIXED_TEXT * 30 + "§¶"
    corpus = write_corpus(text)
    out = tmp_path / "ck"
    args = ["--min-count", "2", "--max-steps", "5", "--out", out, "--name", "u"]
    result = run_cli("train", corpus, *TINY_MODEL, *args)
    assert (
        "unknown 2 characters seen fewer than 2 times map to <unk>: 2 occurrences" in result.stderr
    )
    assert f"{2 / len(text):.3%} of the text" in result.stderr
    # a seed with characters the corpus never had reads them as <unk> instead of failing
    sample = run_cli("sample", "--checkpoint", out / "u", "--seed", "ROMEO ☃", "--length", 50)
    assert sample.stdout.startswith("ROMEO ☃") and "\ufffd" not in sample.stdout


def hangul_share(text: str) -> float:
    letters = [c for c in text if not c.isspace() and not c.isdigit()]
    return sum("\uac00" <= c <= "\ud7a3" for c in letters) / max(len(letters), 1)


def test_korean_with_sentencepiece_chars_trains_and_samples_hangul(tmp_path, run_cli, write_corpus):
    corpus = write_corpus(KOREAN * 80)
    out = tmp_path / "ck"
    sp = ["--tokenizer", "sentencepiece", "--sp-type", "char", "--coverage", "0.9995"]
    run_cli("train", corpus, *sp, *TINY_MODEL, "--max-steps", "150", "--lr", "1e-2",
            "--out", out, "--name", "ko")  # fmt: skip
    seed = unicodedata.normalize("NFD", "대한민국")  # typed on a Mac: normalised like the corpus
    result = run_cli(
        "sample", "--checkpoint", out / "ko", "--seed", seed, "--length", 200,
        "--temperature", "0.5", "--rng-seed", 1,
    )  # fmt: skip
    generated = result.stdout[len("대한민국") :]
    assert result.stdout.startswith("대한민국")
    assert len(generated.rstrip("\n")) == 200 and "\ufffd" not in generated
    assert hangul_share(generated) > 0.7, generated
    info = run_cli("info", out / "ko" / "best.pt", "--json")
    assert '"tokenizer": "sentencepiece"' in info.stdout


def test_byte_tokenizer_trains_resumes_and_samples(tmp_path, run_cli, write_corpus):
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    run_cli("train", corpus, "--tokenizer", "byte", *TINY_MODEL, "--max-steps", "10",
            "--out", out, "--name", "b")  # fmt: skip
    clash = run_cli("train", corpus, "--resume", "b", "--out", out, "--tokenizer", "char",
                    "--max-steps", "20", expect=1)  # fmt: skip
    assert "--tokenizer char (checkpoint has byte)" in one_line_error(clash)
    resumed = run_cli("train", corpus, "--resume", "b", "--out", out, "--max-steps", "20")
    assert "resume" in resumed.stderr and "256 bytes" in resumed.stderr
    result = run_cli("sample", "--checkpoint", out / "b", "--seed", "줄리엣", "--length", 60,
                     "--num-samples", 3, "--format", "jsonl")  # fmt: skip
    samples = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(samples) == 3 and all(len(s["text"]) == 60 for s in samples)
    beam = run_cli("sample", "--checkpoint", out / "b", "--seed", "줄", "--beam", 3, "--length", 9)
    assert beam.stdout.startswith("줄")
    unseeded = run_cli("sample", "--checkpoint", out / "b", "--length", 40, "--rng-seed", 2)
    assert len(unseeded.stdout) in (40, 41)  # 40 characters, then a newline unless it ended one


def test_a_corpus_folder_through_the_cli(tmp_path, run_cli):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(MIXED_TEXT * 10, encoding="utf-8")
    out = tmp_path / "ck"
    result = run_cli("train", folder, *TINY_MODEL, "--max-steps", "5", "--out", out, "--name", "d")
    assert "(3 files)" in result.stderr
    config = json.loads((out / "d" / "config.json").read_text())
    assert config["corpus"] == [str(folder)] and config["data"]["tokenizer"] == "char"
    replay = run_cli("train", "--config", out / "d" / "config.json", "--out", out, "--name", "d2")
    assert "(3 files)" in replay.stderr and "cached encoding" in replay.stderr
    assert json.loads((out / "d2" / "config.json").read_text())["corpus"] == [str(folder)]


def test_whole_lines_recuts_at_newlines_and_bounds_long_lines():
    from charrnn.data.encode import whole_lines

    assert list(whole_lines(["ab\ncd", "e\nf", "g"])) == ["ab\n", "cde\n", "fg"]
    assert list(whole_lines(["x" * 5, "y" * 5, "\nz"], limit=8)) == ["xxxxxyyyyy", "\n", "z"]
