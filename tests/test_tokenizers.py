import numpy as np
import pytest

from charrnn.errors import CharrnnError, UnknownCharactersError
from charrnn.tokenizers import CharVocab, smallest_uint_dtype
from tests.conftest import MIXED_TEXT


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
    assert CharVocab.from_dict(vocab.to_dict()) == vocab


def test_bad_vocabularies_are_refused():
    with pytest.raises(CharrnnError):
        CharVocab("")
    with pytest.raises(CharrnnError):
        CharVocab("ba")
    with pytest.raises(CharrnnError):
        CharVocab.from_dict({"kind": "bpe", "chars": "ab"})
