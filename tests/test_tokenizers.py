import codecs
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.errors import CharrnnError, UnknownCharactersError
from charrnn.text.base import REPLACEMENT, prepare_text, smallest_uint_dtype
from charrnn.text.config import TokenizerConfig
from charrnn.text.sentencepiece import SentencePieceVocab, train_sentencepiece
from charrnn.text.tokenizers import ByteVocab, CharVocab, tokenizer_from_dict
from tests.conftest import MIXED_TEXT, examples


@pytest.mark.parametrize(
    "text",
    [
        "hello, world\n",
        MIXED_TEXT,
        "🌹🌹👩‍👧 e\u0301 \U0010ffff \x00\t",  # astral, ZWJ, combining mark, max code point, NUL
        "한국어 대한민국헌법 제1조 ① 대한민국은 민주공화국이다.\r\n",
    ],
)
def test_encode_decode_round_trip(text):
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    assert len(ids) == len(text)
    assert vocab.decode(ids) == text


def test_vocab_is_sorted_set_of_code_points():
    vocab = CharVocab.from_text("banana 🍌 바나나")
    assert vocab.chars == "".join(sorted(set("banana 🍌 바나나")))
    assert vocab.encode("a")[0] == vocab.chars.index("a")


def test_encoding_matches_a_plain_dictionary_lookup():
    rng = np.random.default_rng(0)
    alphabet = list("abc xyz\n한글🙂é")
    text = "".join(rng.choice(alphabet, size=5000))
    vocab = CharVocab.from_text(text)
    stoi = {c: i for i, c in enumerate(vocab.chars)}
    assert vocab.encode(text).tolist() == [stoi[c] for c in text]


@pytest.mark.parametrize(
    "n_symbols,dtype", [(65, np.uint8), (256, np.uint8), (257, np.uint16), (70_000, np.uint32)]
)
def test_ids_use_the_smallest_dtype(n_symbols, dtype):
    assert smallest_uint_dtype(n_symbols) == dtype
    # a real vocabulary of that size, skipping the surrogate block
    points = [c for c in range(32, 32 + n_symbols + 2048) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, points[:n_symbols]))
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == dtype
    assert vocab.decode(ids) == text


def test_unknown_characters_are_listed():
    vocab = CharVocab.from_text("abc")
    assert vocab.unknown("abxcyx") == ["x", "y"]
    with pytest.raises(UnknownCharactersError) as err:
        vocab.encode("a한b🙂")
    assert err.value.unknown == ["한", "🙂"]
    assert "'한'" in str(err.value) and "'🙂'" in str(err.value)


def test_to_dict_round_trip():
    vocab = CharVocab.from_text(MIXED_TEXT)
    assert tokenizer_from_dict(vocab.to_dict()) == vocab


def test_bad_vocabularies_are_refused():
    with pytest.raises(CharrnnError):
        CharVocab("")
    with pytest.raises(CharrnnError):
        CharVocab("ba")
    with pytest.raises(CharrnnError):
        tokenizer_from_dict({"kind": "bpe", "chars": "ab"})


# ---------------------------------------------------------------- byte, sentencepiece, <unk>


KOREAN_LINES = [
    "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
    "모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다.",
    "ROMEO: But soft, what light through yonder window breaks?",
]


@pytest.fixture(scope="module")
def sp_vocab():
    """A small unigram model trained here, on text the test writes."""
    config = TokenizerConfig(kind="sentencepiece", sp_type="unigram", coverage=1.0)
    return train_sentencepiece(KOREAN_LINES * 20, config, normalize="none", keep_line_ends=True)


@settings(max_examples=examples(6))
@given(st.text())
def test_char_round_trip_of_any_text(text):
    if text:
        vocab = CharVocab.from_text(text)
        assert vocab.decode(vocab.encode(text)) == text


@settings(max_examples=examples(6))
@given(st.text())
def test_byte_round_trip_of_any_text(text):
    vocab = ByteVocab(normalize="none", keep_line_ends=True)
    ids = vocab.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and ids.dtype == np.uint8
    assert vocab.decode(ids) == text


@settings(max_examples=examples(4))
@given(st.text(min_size=1), st.data())
def test_byte_stream_cut_anywhere_never_crashes(text, data):
    """Sampling can stop after any byte: the text so far, then at most one U+FFFD."""
    vocab = ByteVocab(normalize="none", keep_line_ends=True)
    ids = vocab.encode(text)
    cut = data.draw(st.integers(0, len(ids)))
    decoder = vocab.decoder()
    shown = "".join(decoder.push(int(i)) for i in ids[:cut]) + decoder.flush()
    whole = ids[:cut].tobytes()
    assert shown == whole.decode("utf-8", errors="replace")
    complete = codecs.getincrementaldecoder("utf-8")().decode(whole)  # what was whole
    assert shown.startswith(complete) and shown[len(complete) :] in ("", REPLACEMENT)


@settings(max_examples=examples(4), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_sentencepiece_round_trip_of_any_text(sp_vocab, text):
    """Lossless: no whitespace folding, and characters it never saw become bytes."""
    ids = sp_vocab.encode(text)
    assert sp_vocab.decode(ids) == text
    assert not set(ids.tolist()) & set(sp_vocab.special_ids)


@pytest.mark.parametrize("text", ["\u2581", "a \u2581b\u2581\u2581 c\n\u2581"])
def test_sentencepiece_keeps_its_own_space_symbol(sp_vocab, text):
    """SentencePiece reads U+2581 as a space; a real one in the text must come back."""
    ids = sp_vocab.encode(text)
    assert sp_vocab.decode(ids) == text
    assert sp_vocab.decode(sp_vocab.encode(text.replace("\u2581", " "))) == text.replace(
        "\u2581", " "
    )


def test_sentencepiece_keeps_newlines_and_serialises(sp_vocab):
    text = "대한민국\n\n  two  spaces\tand a tab\n"
    ids = sp_vocab.encode(text)
    newline = sp_vocab.sp.piece_to_id("\n")  # a piece of its own, not the byte <0x0A>
    assert not sp_vocab.sp.is_byte(newline) and ids.tolist().count(newline) == 3
    again = tokenizer_from_dict(sp_vocab.to_dict())
    assert isinstance(again, SentencePieceVocab) and again.encode(text).tolist() == ids.tolist()


def test_sentencepiece_vocab_too_small_is_a_clear_error():
    config = TokenizerConfig(kind="sentencepiece", sp_type="bpe", vocab_size=5)
    with pytest.raises(
        CharrnnError, match=r"--vocab-size 5 is too small: .* need \d+; give a larger"
    ):
        train_sentencepiece(KOREAN_LINES, config, normalize="none", keep_line_ends=True)
    config = TokenizerConfig(kind="sentencepiece", sp_type="unigram", vocab_size=50_000)
    with pytest.raises(CharrnnError, match=r"--vocab-size 50000 is too large for this text; use"):
        train_sentencepiece(KOREAN_LINES, config, normalize="none", keep_line_ends=True)


def test_unk_stands_for_every_unseen_character():
    vocab = CharVocab("abc", unk=True)
    assert len(vocab) == 4 and vocab.special_ids == [3]
    assert vocab.unknown("abz한") == []
    assert vocab.encode("abz한").tolist() == [0, 1, 3, 3]
    assert vocab.decode([0, 3, 2]) == f"a{REPLACEMENT}c"
    assert tokenizer_from_dict(vocab.to_dict()) == vocab


@settings(max_examples=examples(4))
@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_prepared_text_is_normalised_and_has_lf_line_ends(text):
    out = prepare_text(text, "nfc", keep_line_ends=False)
    assert "\r" not in out
    assert unicodedata.is_normalized("NFC", out)
    assert prepare_text(out, "nfc", keep_line_ends=False) == out  # idempotent


def test_a_checkpoint_vocab_from_before_options_reads_as_unprepared_text():
    old = tokenizer_from_dict({"kind": "char", "chars": "\n\rab"})
    assert (old.normalize, old.keep_line_ends, old.unk) == ("none", True, False)
    assert old.encode("a\r\nb").tolist() == [2, 1, 0, 3]


def test_sentencepiece_on_threads_gives_the_same_ids(sp_vocab, monkeypatch):
    import charrnn.text.sentencepiece

    text = "\n".join(KOREAN_LINES * 40) + "\n끝"
    single = sp_vocab.encode(text)
    monkeypatch.setattr(charrnn.text.sentencepiece, "SP_PARALLEL_CHARS", 100)
    monkeypatch.setattr(charrnn.text.sentencepiece.os, "cpu_count", lambda: 2)
    parallel = sp_vocab.encode(text)
    assert parallel.tolist() == single.tolist() and sp_vocab.decode(parallel) == text


def test_sentencepiece_training_is_deterministic():
    config = TokenizerConfig(kind="sentencepiece", sp_type="bpe", vocab_size=400)
    a = train_sentencepiece(KOREAN_LINES * 20, config, "nfc", False)
    b = train_sentencepiece(KOREAN_LINES * 20, config, "nfc", False)
    assert a.model == b.model
