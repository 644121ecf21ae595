import os

import pytest
import torch

from charrnn.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    newest_checkpoint,
    restore_model,
    save_checkpoint,
)
from charrnn.errors import CheckpointError, WriteError
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.text.tokenizers import CharVocab


def make_payload():
    torch.manual_seed(0)
    vocab = CharVocab.from_text("abc한🙂\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell="gru", layers=2, hidden=16, embed=4))
    return (
        model.eval(),
        vocab,
        {
            "model_config": model.config.to_dict(),
            "vocab": vocab.to_dict(),
            "model": model.state_dict(),
            "step": 7,
        },
    )


def test_save_then_load_gives_identical_logits(tmp_path):
    model, vocab, payload = make_payload()
    save_checkpoint(payload, tmp_path / "run" / "best.pt")
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["format_version"] == FORMAT_VERSION and ckpt["step"] == 7
    loaded, loaded_vocab = restore_model(ckpt)
    assert loaded_vocab == vocab
    ids = torch.randint(0, len(vocab), (2, 9))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], loaded(ids)[0])


def test_a_run_folder_loads_its_best_checkpoint(tmp_path):
    _, _, payload = make_payload()
    save_checkpoint({**payload, "step": 1}, tmp_path / "run" / "last.pt")
    assert load_checkpoint(tmp_path / "run")["step"] == 1
    save_checkpoint({**payload, "step": 2}, tmp_path / "run" / "best.pt")
    assert load_checkpoint(tmp_path / "run")["step"] == 2


def test_newest_checkpoint_picks_the_latest_run(tmp_path):
    _, _, payload = make_payload()
    with pytest.raises(CheckpointError, match="no checkpoints"):
        newest_checkpoint(tmp_path)
    save_checkpoint(payload, tmp_path / "old" / "best.pt")
    save_checkpoint(payload, tmp_path / "new" / "best.pt")
    os.utime(tmp_path / "old" / "best.pt", (1_000_000, 1_000_000))
    assert newest_checkpoint(tmp_path) == tmp_path / "new" / "best.pt"


@pytest.mark.parametrize(
    "make_bad,message",
    [
        (lambda good: good[: len(good) // 2], "is damaged: cut short"),
        (lambda good: good[:-100], "is damaged: cut short"),
        (
            lambda good: good[:4000] + bytes(1000) + good[5000:],
            "is damaged: cut short or corrupted",
        ),
        (lambda good: b"PK\x03\x04" + os.urandom(4096), "is damaged: cut short"),
        (lambda good: os.urandom(4096), "not a charrnn checkpoint \\(not a PyTorch zip archive"),
        (lambda good: b"just some text\n", "not a charrnn checkpoint \\(not a PyTorch zip archive"),
        (lambda good: b"", "is damaged: the file is empty"),
    ],
)
def test_damaged_files_give_a_clear_error(tmp_path, make_bad, message):
    _, _, payload = make_payload()
    good = tmp_path / "good.pt"
    save_checkpoint(payload, good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(make_bad(good.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)


def test_another_programs_checkpoint_is_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a charrnn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_newer_format_asks_for_an_upgrade(tmp_path):
    _, _, payload = make_payload()
    path = tmp_path / "future.pt"
    torch.save({**payload, "format": "charrnn", "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="upgrade charrnn"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would create a file: the attack weights_only=True stops."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "charrnn", "format_version": 1, "x": _Payload(target)}, path)
    with pytest.raises(CheckpointError, match=r"is refused: it holds a Python object \(\S*open\)"):
        load_checkpoint(path)
    assert not target.exists()


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    _, _, payload = make_payload()
    path = tmp_path / "last.pt"
    save_checkpoint({**payload, "step": 1}, path)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(
        WriteError,
        match="cannot write .*last.pt: no space left on device; the previous version is intact",
    ):
        save_checkpoint({**payload, "step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp files left


def test_saved_files_get_the_usual_permissions(tmp_path):
    _, _, payload = make_payload()
    old = os.umask(0o022)
    try:
        save_checkpoint(payload, tmp_path / "best.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "best.pt").stat().st_mode & 0o777 == 0o644
