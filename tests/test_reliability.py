"""Bad input, faults and hostile files, through the `charrnn` command.

Each case runs the command as a shell would, from a working folder where the files
have short relative names. The messages are pinned here, and README's troubleshooting
table must show each one as it is.

Messages run in this process (click's CliRunner: the same command, the same
`error: ...` line from charrnn.cli.console.user_errors, the same exit status). A real
`python -m charrnn` process runs where the process is the point: a file-size rlimit
while saving, a second process holding the run lock, a reader that closes the pipe,
and the memory of a process streaming text out.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import os
import re
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.checkpoint import FORMAT_VERSION, load_checkpoint
from charrnn.cli import cli
from charrnn.data.cache import CACHE_VERSION
from tests.conftest import MIXED_TEXT, TINY_MODEL, charrnn_cmd, invoke, no_loss_plot

README = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------ helpers


def env_for(work: Path) -> dict:
    # a wide terminal, so no message is ever wrapped onto a second line
    return {**os.environ, "CHARRNN_CACHE_DIR": str(work / "cache"), "COLUMNS": "300"}


# what Python's default warning filters hide from a person running charrnn
HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@pytest.fixture
def charrnn(monkeypatch):
    """`charrnn ARGS` in this process, from the folder `work` (short relative names).

    A warning that a real process would print on stderr fails the test here too (the
    in-process command hands warnings to pytest, not to result.stderr)."""

    def command(work: Path, *args):
        monkeypatch.chdir(work)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = invoke(*args)
        shown = [w for w in caught if not issubclass(w.category, HIDDEN_WARNINGS)]
        assert not shown, [warnings.formatwarning(w.message, w.category, w.filename,
                                                  w.lineno) for w in shown]  # fmt: skip
        return result

    return command


def exit_status(result) -> int:
    """A real process's return code, or the in-process command's exit status."""
    if isinstance(result, subprocess.CompletedProcess):
        return result.returncode
    return result.exit_code


def the_error(result, code: int = 1) -> str:
    """The one line a failing command printed; it must print nothing else."""
    assert exit_status(result) == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if code == 2:  # click's usage error: a usage line, a hint, then the error
        return lines[-1]
    assert len(lines) == 1, result.stderr
    return lines[0]


def png_bytes() -> bytes:
    """A real 4x4 PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff" * 12 * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def zip_bytes(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "plain text inside a zip\n" * 50)
    return path.read_bytes()


class CodeRunner:
    """Unpickling this would create the file `target`: the attack a checkpoint can carry."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@contextmanager
def file_size_limit(limit: int):
    """Every write past `limit` bytes fails as a full disk would (EFBIG); Python ignores
    SIGXFSZ, so the write raises instead of killing the process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


# ------------------------------------------------------------------ a trained run to break


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A working folder with a corpus and a tiny finished run, checkpoints/tiny."""
    work = tmp_path_factory.mktemp("reliability")
    (work / "corpus.txt").write_text(MIXED_TEXT * 30, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp, no_loss_plot():
        mp.chdir(work)
        args = ["train", "corpus.txt", *TINY_MODEL, "--max-steps", "30", "--name", "tiny"]
        result = invoke(*args, env={"CHARRNN_CACHE_DIR": str(work / "cache")})
    assert result.exit_code == 0, result.output
    return work


def fresh_copy_of_tiny(work: Path, name: str) -> Path:
    run_dir = work / "checkpoints" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(work / "checkpoints" / "tiny", run_dir)
    return run_dir


# ------------------------------------------------------------------ corpus errors


def _write(name: str, content: bytes):
    return lambda work: (work / name).write_bytes(content)


def _folder(name: str):
    return lambda work: (work / name).mkdir(exist_ok=True)


CORPUS_CASES = {
    "missing": (None, "nope.txt", "error: corpus nope.txt: no such file"),
    "folder without text": (
        _folder("empty"),
        "empty",
        "error: corpus empty: the directory holds no *.txt files",
    ),
    "empty": (_write("empty.txt", b""), "empty.txt", "error: corpus empty.txt: the file is empty"),
    "whitespace": (
        _write("blank.txt", b" \n\t\n   \r\n" * 500),
        "blank.txt",
        "error: corpus blank.txt: the text is only whitespace",
    ),
    "invalid utf-8": (
        _write("broken.txt", b"good text \xe2\x82 then bad" * 100),
        "broken.txt",
        "error: corpus broken.txt: not valid UTF-8 at byte offset 10 (bytes e2 82 20 74); "
        "name its encoding with --encoding (e.g. latin-1), or pass --errors replace",
    ),
    "latin-1": (
        _write("latin1.txt", "café au lait, crème brûlée\n".encode("latin-1") * 200),
        "latin1.txt",
        "error: corpus latin1.txt: not valid UTF-8 at byte offset 3 (bytes e9 20 61 75); "
        "name its encoding with --encoding (e.g. latin-1), or pass --errors replace",
    ),
    "utf-16 with a bom": (
        _write("wide.txt", "hello, wide world\n".encode("utf-16") * 200),
        "wide.txt",
        "error: corpus wide.txt: looks like UTF-16 (it starts with a byte-order mark); "
        "pass --encoding utf-16",
    ),
    "png image": (
        _write("picture.png", png_bytes()),
        "picture.png",
        "error: corpus picture.png: looks like a binary file (NUL bytes at byte offset 8), "
        "not text",
    ),
    "zip archive": (
        lambda work: zip_bytes(work / "texts.zip"),
        "texts.zip",
        "error: corpus texts.zip: looks like a binary file (NUL bytes at byte offset 5), not text",
    ),
    "shorter than one batch": (
        _write("short.txt", b"to be or not to be\n"),
        "short.txt",
        "error: corpus short.txt is too short: 19 characters, but --batch-size 32 x --seq-len 50 "
        "with --val-frac 0.1 needs at least 1,779",
    ),
}


@pytest.mark.parametrize("case", CORPUS_CASES)
def test_a_bad_corpus_gets_one_line_naming_the_file_and_the_reason(tmp_path, charrnn, case):
    setup, name, message = CORPUS_CASES[case]
    if setup:
        setup(tmp_path)
    result = charrnn(tmp_path, "train", name, "--name", "bad")
    assert the_error(result) == message
    assert not (tmp_path / "checkpoints").exists()  # nothing was started


@pytest.mark.skipif(IS_ROOT, reason="root reads any file whatever its mode")
def test_an_unreadable_corpus_is_named(tmp_path, charrnn):
    (tmp_path / "secret.txt").write_text("text\n" * 500)
    (tmp_path / "secret.txt").chmod(0)
    result = charrnn(tmp_path, "train", "secret.txt")
    assert the_error(result) == "error: corpus secret.txt: permission denied"


def test_utf16_trains_once_its_encoding_is_named(tmp_path, charrnn):
    (tmp_path / "wide.txt").write_bytes((MIXED_TEXT * 30).encode("utf-16"))
    args = ["--max-steps", "2", "--encoding", "utf-16", "--name", "wide"]
    result = charrnn(tmp_path, "train", "wide.txt", *TINY_MODEL, *args)
    assert result.exit_code == 0, result.stderr
    chars = load_checkpoint(tmp_path / "checkpoints" / "wide" / "last.pt")["vocab"]["chars"]
    assert set(MIXED_TEXT) == set(chars)  # read as text, byte-order mark gone


# ------------------------------------------------------------------ checkpoint errors


def _damage(make):
    def setup(work: Path, name: str):
        good = (work / "checkpoints" / "tiny" / "last.pt").read_bytes()
        (work / name).write_bytes(make(good))

    return setup


def _flip_a_weight(good: bytes) -> bytes:
    """One byte inside the stored weights changed: only the zip's CRC can tell."""
    at = good.index(b"archive/data/0") + 200  # inside the first tensor's bytes
    return good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :]


def _torch_save(make):
    def setup(work: Path, name: str):
        torch.save(make(work), work / name)

    return setup


def _numpy_archive(work: Path, name: str) -> None:
    with open(work / name, "wb") as f:
        np.savez(f, weights=np.zeros((4, 4), dtype=np.float32))


def _newer_version(work: Path) -> dict:
    ckpt = torch.load(work / "checkpoints" / "tiny" / "last.pt", weights_only=True)
    return {**ckpt, "format_version": FORMAT_VERSION + 1}


CHECKPOINT_CASES = {
    "truncated": (
        _damage(lambda good: good[: len(good) // 2]),
        "error: checkpoint cut.pt is damaged: cut short (the end of the zip archive is missing)",
    ),
    "a flipped byte": (
        _damage(_flip_a_weight),
        re.compile(
            r"error: checkpoint flipped\.pt is damaged: cut short or corrupted "
            r"\(archive/\S+ fails its checksum\)"
        ),
    ),
    "random bytes": (
        _damage(lambda good: os.urandom(4096)),
        "error: checkpoint random.pt is not a charrnn checkpoint (not a PyTorch zip archive)",
    ),
    "a text file": (
        _damage(lambda good: b"epoch 1: loss 2.3\n" * 10),
        "error: checkpoint notes.pt is not a charrnn checkpoint (not a PyTorch zip archive)",
    ),
    "empty": (
        _damage(lambda good: b""),
        "error: checkpoint empty.pt is damaged: the file is empty",
    ),
    "a numpy archive": (
        _numpy_archive,
        "error: checkpoint arrays.pt is not a charrnn checkpoint (a zip archive, but not one "
        "that torch.save wrote)",
    ),
    "another program's": (
        _torch_save(lambda work: {"state_dict": torch.nn.Linear(3, 2).state_dict(), "epoch": 7}),
        "error: checkpoint other.pt is not a charrnn checkpoint",
    ),
    "a newer format": (
        _torch_save(_newer_version),
        f"error: checkpoint future.pt has format version {FORMAT_VERSION + 1}, newer than this "
        f"charrnn reads ({FORMAT_VERSION}); upgrade charrnn",
    ),
}
CHECKPOINT_FILES = {
    "truncated": "cut.pt",
    "a flipped byte": "flipped.pt",
    "random bytes": "random.pt",
    "a text file": "notes.pt",
    "empty": "empty.pt",
    "a numpy archive": "arrays.pt",
    "another program's": "other.pt",
    "a newer format": "future.pt",
}


def matches(line: str, expected: str | re.Pattern) -> bool:
    return line == expected if isinstance(expected, str) else bool(expected.fullmatch(line))


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_a_bad_checkpoint_is_refused_in_one_line(work, charrnn, case):
    setup, message = CHECKPOINT_CASES[case]
    name = CHECKPOINT_FILES[case]
    setup(work, name)
    for command in (["sample", "--length", "10", "--checkpoint", name], ["info", name]):
        result = charrnn(work, *command)
        line = the_error(result)
        assert matches(line, message), line
        assert result.stdout == ""


@pytest.mark.parametrize("command", ["sample", "info", "eval", "resume"])
def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(
    tmp_path, charrnn, command
):
    target = tmp_path / "pwned"
    run_dir = tmp_path / "checkpoints" / "evil"
    run_dir.mkdir(parents=True)
    (tmp_path / "corpus.txt").write_text(MIXED_TEXT * 30)
    # shaped like ours, so only the unpickler stands between the payload and the disk
    payload = {
        "format": "charrnn",
        "format_version": FORMAT_VERSION,
        "model": CodeRunner(str(target)),
    }
    torch.save(payload, run_dir / "last.pt")
    args = {
        "sample": ["sample", "--checkpoint", "checkpoints/evil/last.pt"],
        "info": ["info", "checkpoints/evil/last.pt"],
        "eval": ["eval", "corpus.txt", "--checkpoint", "checkpoints/evil/last.pt"],
        "resume": ["train", "corpus.txt", "--resume", "evil"],
    }[command]
    line = the_error(charrnn(tmp_path, *args))
    assert re.fullmatch(
        r"error: checkpoint checkpoints/evil/last\.pt is refused: it holds a Python object "
        r"\(\S+\.open\) that could run code when loaded; charrnn loads only tensors and plain data",
        line,
    ), line
    assert not target.exists()


def test_a_format_1_checkpoint_still_loads_and_samples_the_same(work, charrnn):
    ckpt = torch.load(work / "checkpoints" / "tiny" / "last.pt", weights_only=True)
    old = {**ckpt, "format_version": 1, "vocab": {"kind": "char", "chars": ckpt["vocab"]["chars"]}}
    torch.save(old, work / "old.pt")
    args = ["--seed", "ROMEO: ", "--length", "80", "--rng-seed", "3"]
    new_text = charrnn(work, "sample", "--checkpoint", "checkpoints/tiny/last.pt", *args)
    old_text = charrnn(work, "sample", "--checkpoint", "old.pt", *args)
    assert new_text.exit_code == old_text.exit_code == 0, old_text.stderr
    assert old_text.stdout == new_text.stdout and len(old_text.stdout) > 80


# ------------------------------------------------------------------ options out of range

OPTION_CASES = [
    (
        ["sample", "--temperature", "-1"],
        "Error: Invalid value for '--temperature': -1.0 is not in the range x>=0.",
    ),
    (
        ["sample", "--temperature", "nan"],
        "Error: Invalid value for '--temperature': 'nan' is not a finite number",
    ),
    (
        ["sample", "--temperature", "inf"],
        "Error: Invalid value for '--temperature': 'inf' is not a finite number",
    ),
    (
        ["sample", "--top-p", "0"],
        "Error: Invalid value for '--top-p': 0.0 is not in the range 0<x<=1.",
    ),
    (
        ["sample", "--top-p", "1.5"],
        "Error: Invalid value for '--top-p': 1.5 is not in the range 0<x<=1.",
    ),
    (
        ["sample", "--top-p", "nan"],
        "Error: Invalid value for '--top-p': 'nan' is not a finite number",
    ),
    (["sample", "--top-k", "0"], "Error: Invalid value for '--top-k': 0 is not in the range x>=1."),
    (
        ["sample", "--length", "0"],
        "Error: Invalid value for '--length': 0 is not in the range x>=1.",
    ),
    (
        ["sample", "--length", "-5"],
        "Error: Invalid value for '--length': -5 is not in the range x>=1.",
    ),
    (
        ["train", "corpus.txt", "--layers", "0"],
        "Error: Invalid value for '--layers': 0 is not in the range x>=1.",
    ),
    (
        ["train", "corpus.txt", "--dropout", "1"],
        "Error: Invalid value for '--dropout': 1.0 is not in the range 0<=x<1.",
    ),
    (
        ["train", "corpus.txt", "--dropout", "-0.1"],
        "Error: Invalid value for '--dropout': -0.1 is not in the range 0<=x<1.",
    ),
    (
        ["train", "corpus.txt", "--seq-len", "0"],
        "Error: Invalid value for '--seq-len': 0 is not in the range x>=1.",
    ),
    (
        ["train", "corpus.txt", "--batch-size", "0"],
        "Error: Invalid value for '--batch-size': 0 is not in the range x>=1.",
    ),
    (
        ["train", "corpus.txt", "--hidden", "0"],
        "Error: Invalid value for '--hidden': 0 is not in the range x>=1.",
    ),
    (
        ["train", "corpus.txt", "--lr", "nan"],
        "Error: Invalid value for '--lr': 'nan' is not a finite number",
    ),
    (
        ["train", "corpus.txt", "--val-frac", "1"],
        "Error: Invalid value for '--val-frac': 1.0 is not in the range 0<=x<=0.5.",
    ),
    (
        ["train", "corpus.txt", "--time", "3x"],
        "Error: Invalid value for '--time': '3x' is not a duration such as 90s, 3m, 1h or 1h30m",
    ),
]


@pytest.mark.parametrize(
    "args,message", OPTION_CASES, ids=[" ".join(a[-2:]) for a, _ in OPTION_CASES]
)
def test_an_option_out_of_range_is_a_usage_error(tmp_path, charrnn, args, message):
    (tmp_path / "corpus.txt").write_text(MIXED_TEXT * 30)
    result = charrnn(tmp_path, *args)
    assert the_error(result, code=2) == message
    assert "Usage: charrnn" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


# ------------------------------------------------------------------ faults while saving


def test_a_full_disk_while_saving_keeps_the_old_checkpoints(work, charrnn):
    """A size limit makes every write past 30 KB fail as a full disk would (EFBIG).
    A real process: the limit is set in the child before it starts."""
    run_dir = fresh_copy_of_tiny(work, "full")
    before = {name: (run_dir / name).read_bytes() for name in ("last.pt", "best.pt")}
    limit = 30 * 1024  # above config.json and the metrics, below a checkpoint (~90 KB)
    assert all(len(data) > limit for data in before.values())

    def small_files_only():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        charrnn_cmd("train", "corpus.txt", "--resume", "full", "--max-steps", "60"),
        cwd=work,
        env=env_for(work),
        capture_output=True,
        text=True,
        preexec_fn=small_files_only,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(
        r"^error: cannot write checkpoints/full/(last|best)\.pt: file too large; "
        r"the previous version is intact$",
        result.stderr,
        re.MULTILINE,
    ), result.stderr
    for name, data in before.items():
        assert (run_dir / name).read_bytes() == data, f"{name} changed"
        assert load_checkpoint(run_dir / name)["step"] == 30
    assert not list(run_dir.glob(".*.tmp"))  # the half-written temp file was removed

    # with room again, the same run resumes and finishes
    again = charrnn(work, "train", "corpus.txt", "--resume", "full", "--max-steps", "60")
    assert again.exit_code == 0, again.stderr
    assert load_checkpoint(run_dir / "last.pt")["step"] == 60


def test_a_full_disk_while_encoding_says_where_and_leaves_no_partial_cache(tmp_path, charrnn):
    """The same rlimit, set on this process for the one command (see above for a real
    process under it): writing the 60k ids (240 KB) into the cache fails at 20 KB."""
    (tmp_path / "corpus.txt").write_text(MIXED_TEXT * 300, encoding="utf-8")  # 60k ids
    with file_size_limit(20 * 1024):
        result = charrnn(tmp_path, "train", "corpus.txt", "--max-steps", "1")
    cache = tmp_path / "cache" / f"v{CACHE_VERSION}"
    assert the_error(result) == (
        f"error: cannot write the encoded corpus to the encoding cache ({cache}): "
        f"file too large; set CHARRNN_CACHE_DIR to a folder with room"
    )
    assert list(cache.iterdir()) == []  # no partial ids file that a later run could trust
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders")
def test_a_read_only_run_folder_keeps_the_old_checkpoints(work, charrnn):
    run_dir = fresh_copy_of_tiny(work, "readonly")
    before = (run_dir / "last.pt").read_bytes()
    run_dir.chmod(0o555)
    try:
        result = charrnn(work, "train", "corpus.txt", "--resume", "readonly", "--max-steps", "60")
    finally:
        run_dir.chmod(0o755)
    line = the_error(result)
    assert (
        line.startswith("error: cannot write checkpoints/readonly/") and "permission denied" in line
    )
    assert (run_dir / "last.pt").read_bytes() == before


# ------------------------------------------------------------------ two trainers, one run


def test_a_second_trainer_into_the_same_run_is_refused(work, charrnn):
    """The first trainer is a real process; the second (this process) finds its lock."""
    run_dir = work / "checkpoints" / "busy"
    shutil.rmtree(run_dir, ignore_errors=True)
    first = subprocess.Popen(
        charrnn_cmd(
            "train", "corpus.txt", *TINY_MODEL, "--max-steps", "10000000", "--name", "busy"
        ),
        cwd=work,
        env=env_for(work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in first.stderr:  # the loop (and so the lock) has started
            if line.startswith("params"):
                break
        lock, last = run_dir / ".train.lock", run_dir / "last.pt"
        deadline = time.monotonic() + 60
        # the lock names the first trainer, and it has saved (so --resume has a target)
        while lock.read_text().strip() != str(first.pid) or not last.exists():
            assert time.monotonic() < deadline, "the first trainer never locked and saved"
            assert first.poll() is None, "the first trainer ended early"
            time.sleep(0.01)
        message = (
            f"error: run checkpoints/busy is being trained by another process (pid {first.pid}); "
            f"wait for it to finish, or pick another --name"
        )
        for args in (["--name", "busy", *TINY_MODEL], ["--resume", "busy"]):
            assert the_error(charrnn(work, "train", "corpus.txt", *args)) == message
        assert first.poll() is None  # the first trainer was not disturbed
    finally:
        first.send_signal(signal.SIGINT)
        rest = first.communicate(timeout=60)[1]
    assert first.returncode == 130, rest
    step = load_checkpoint(run_dir / "last.pt")["step"]
    # the lock died with the first process: the run resumes
    resumed = charrnn(work, "train", "corpus.txt", "--resume", "busy", "--max-steps", step + 2)
    assert resumed.exit_code == 0, resumed.stderr


# ------------------------------------------------------------------ big input and output


def reset_peak_rss() -> bool:
    """Start this process's peak RSS (VmHWM) afresh at its current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def peak_rss_growth_mb(command) -> float:
    """How far this process's RSS peaked above where it stood, while `command` ran.
    Garbage and free heap pages go first, so the command's memory is new pages."""
    gc.collect()
    with contextlib.suppress(AttributeError, OSError):  # glibc only
        ctypes.CDLL(None).malloc_trim(0)
    assert reset_peak_rss()
    before = proc_status_mb("VmRSS")
    command()
    return proc_status_mb("VmHWM") - before


@pytest.mark.skipif(not reset_peak_rss(), reason="resets the peak RSS through /proc")
def test_a_megabyte_seed_primes_in_bounded_memory(work, charrnn):
    seed = (MIXED_TEXT * 6000)[:1_000_000]  # a million characters, 1.4 MB of UTF-8
    (work / "big-seed.txt").write_text(seed, encoding="utf-8")
    (work / "small-seed.txt").write_text(seed[:100], encoding="utf-8")
    ckpt = ["sample", "--checkpoint", "checkpoints/tiny/last.pt", "--length", "100"]
    results = {}

    def sample(name):
        return lambda: results.setdefault(name, charrnn(work, *ckpt, "--seed-file", name))

    small = peak_rss_growth_mb(sample("small-seed.txt"))
    big = peak_rss_growth_mb(sample("big-seed.txt"))
    assert results["small-seed.txt"].exit_code == results["big-seed.txt"].exit_code == 0
    printed = results["big-seed.txt"].stdout
    assert printed.startswith(seed[:1000]) and len(printed) >= len(seed) + 100
    # priming all at once held (S, V) logits and (S, H) outputs: over 150 MB here
    assert big - small < 80, f"peak RSS grew {small:.0f} MB, then {big:.0f} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_a_million_characters_stream_out_in_flat_memory_until_the_reader_goes(work):
    """A real process writing into a real pipe: text arrives as it is made, memory stays
    flat, and when the reader closes the pipe (`| head`) the program ends quietly."""
    proc = subprocess.Popen(
        charrnn_cmd("sample", "--checkpoint", "checkpoints/tiny/last.pt", "--length", "1000000"),
        cwd=work,
        env=env_for(work),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    received, enough = [0], threading.Event()

    def drain():  # read until told to stop, then close the pipe as `head` would
        while not enough.is_set() and (chunk := proc.stdout.read1(65536)):
            received[0] += len(chunk)
        proc.stdout.close()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while received[0] < 2000:  # text is arriving: it streams, not at the end
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        start_bytes, start_rss = received[0], rss_mb(proc.pid)
        time.sleep(3.0)
        end_bytes, end_rss = received[0], rss_mb(proc.pid)
        assert proc.poll() is None  # a million characters take far longer
        enough.set()
        reader.join(timeout=60)
        errors = proc.stderr.read().decode()
        status = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert end_bytes > start_bytes + 5000  # still streaming
    assert end_rss - start_rss < 8, f"RSS grew {start_rss:.0f} -> {end_rss:.0f} MB"
    assert status == 0, errors  # the reader that went away is not an error
    assert "Traceback" not in errors and "BrokenPipe" not in errors and "Exception" not in errors


@pytest.fixture
def closed_stdout(monkeypatch, capsys):
    """Run `charrnn ARGS` in this process with stdout on a pipe whose reader is gone,
    unbuffered like a real process's here (PYTHONUNBUFFERED); returns (exit status,
    stderr). The process's own SIGPIPE is ignored (Python does that at startup), so a
    write fails with EPIPE, which `user_errors` must turn into a quiet exit 0 (click
    alone would exit 1)."""

    def run_it(work: Path, *args) -> tuple[int, str]:
        monkeypatch.chdir(work)
        read_end, write_end = os.pipe()
        os.close(read_end)
        pipe = io.TextIOWrapper(io.FileIO(write_end, "w"), encoding="utf-8", write_through=True)
        try:
            with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as ended:
                mp.setattr(sys, "stdout", pipe)  # click may swap it on EPIPE: put it back
                cli.main([str(a) for a in args], prog_name="charrnn")
            # exit_for_closed_stdout pointed the descriptor at /dev/null: the write failed
            # and was handled, rather than the command never writing at all
            assert stat.S_ISCHR(os.fstat(write_end).st_mode)
        finally:
            pipe.close()
        return ended.value.code, capsys.readouterr().err

    return run_it


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--num-samples", "3", "--length", "3000"],
        ["--format", "jsonl", "--num-samples", "40", "--length", "300"],
    ],
    ids=["stream", "three samples", "jsonl"],
)
def test_a_reader_that_closes_early_ends_the_program_quietly(work, closed_stdout, extra):
    cmd = ["sample", "--checkpoint", "checkpoints/tiny/last.pt", "--length", "200000"]
    status, errors = closed_stdout(work, *cmd, *extra)
    assert status == 0, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors and "Exception" not in errors


def test_a_reader_that_is_already_gone_is_not_an_error_to_a_real_process(work):
    """A real process: what it writes may sit in stdout's buffer until the interpreter
    flushes it on the way out, which only a process that exits can show (and only with
    a buffered stdout, as a user's shell gives it: no PYTHONUNBUFFERED)."""
    env = {k: v for k, v in env_for(work).items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        charrnn_cmd("info", "checkpoints/tiny/last.pt", "--json"),
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before charrnn writes a byte
    errors = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, errors
    assert errors == ""


@pytest.mark.parametrize(
    "args",
    [["info", "checkpoints/tiny/last.pt", "--json"], ["runs", "--json"]],
    ids=["info", "runs"],
)
def test_a_reader_that_is_already_gone_is_not_an_error(work, closed_stdout, args):
    status, errors = closed_stdout(work, *args)  # gone before charrnn writes a byte
    assert status == 0, errors
    assert errors == ""


# ------------------------------------------------------------------ README shows the real messages


def troubleshooting_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Troubleshooting")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_troubleshooting_table_shows_every_message():
    section = troubleshooting_section()
    shown = re.findall(r"`([^`]+)`", section)
    expected = [m for _, _, m in CORPUS_CASES.values()]
    expected += [m for _, m in CHECKPOINT_CASES.values()]
    expected += [m for _, m in OPTION_CASES]
    missing = [
        m if isinstance(m, str) else m.pattern
        for m in expected
        if not any(matches(text, m) for text in shown)
    ]
    assert not missing, "README troubleshooting lacks:\n" + "\n".join(missing)
