"""Bad input, faults and hostile files, through the real `charrnn` process.

Every case runs `python -m charrnn` in a subprocess, as a shell would, from a
working folder where the files have short relative names. The messages are
pinned here, and README's troubleshooting table must show each one as it is.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.checkpoint import FORMAT_VERSION, load_checkpoint
from charrnn.data.cache import CACHE_VERSION
from tests.conftest import MIXED_TEXT, TINY_MODEL

README = Path(__file__).resolve().parent.parent / "README.md"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------ helpers


def charrnn_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "charrnn", *map(str, args)]


def run(work: Path, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        charrnn_cmd(*args),
        cwd=work,
        env=env_for(work),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def env_for(work: Path) -> dict:
    # a wide terminal, so no message is ever wrapped onto a second line
    return {**os.environ, "CHARRNN_CACHE_DIR": str(work / "cache"), "COLUMNS": "300"}


def the_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one line a failing command printed; it must print nothing else."""
    assert result.returncode == code, result.stderr
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


def peak_rss_mb(work: Path, *args) -> tuple[float, int, int]:
    """(peak RSS of one charrnn process in MB, its exit status, bytes it wrote to stdout)."""
    out_path = work / "stdout.bin"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            charrnn_cmd(*args), cwd=work, env=env_for(work), stdout=out, stderr=subprocess.PIPE
        )
        proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KB, or bytes on macOS
    return usage.ru_maxrss / scale, proc.returncode, out_path.stat().st_size


# ------------------------------------------------------------------ a trained run to break


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A working folder with a corpus and a tiny finished run, checkpoints/tiny."""
    work = tmp_path_factory.mktemp("reliability")
    (work / "corpus.txt").write_text(MIXED_TEXT * 30, encoding="utf-8")
    result = run(work, "train", "corpus.txt", *TINY_MODEL, "--max-steps", "30", "--run", "tiny")
    assert result.returncode == 0, result.stderr
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
def test_a_bad_corpus_gets_one_line_naming_the_file_and_the_reason(tmp_path, case):
    setup, name, message = CORPUS_CASES[case]
    if setup:
        setup(tmp_path)
    result = run(tmp_path, "train", name, "--run", "bad")
    assert the_error(result) == message
    assert not (tmp_path / "checkpoints").exists()  # nothing was started


@pytest.mark.skipif(IS_ROOT, reason="root reads any file whatever its mode")
def test_an_unreadable_corpus_is_named(tmp_path):
    (tmp_path / "secret.txt").write_text("text\n" * 500)
    (tmp_path / "secret.txt").chmod(0)
    result = run(tmp_path, "train", "secret.txt")
    assert the_error(result) == "error: corpus secret.txt: permission denied"


def test_utf16_trains_once_its_encoding_is_named(tmp_path):
    (tmp_path / "wide.txt").write_bytes((MIXED_TEXT * 30).encode("utf-16"))
    args = ["--max-steps", "2", "--encoding", "utf-16", "--run", "wide"]
    result = run(tmp_path, "train", "wide.txt", *TINY_MODEL, *args)
    assert result.returncode == 0, result.stderr
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
def test_a_bad_checkpoint_is_refused_in_one_line(work, case):
    setup, message = CHECKPOINT_CASES[case]
    name = CHECKPOINT_FILES[case]
    setup(work, name)
    for command in (["sample", "--length", "10", "--checkpoint", name], ["info", name]):
        result = run(work, *command)
        line = the_error(result)
        assert matches(line, message), line
        assert result.stdout == ""


@pytest.mark.parametrize("command", ["sample", "info", "eval", "resume"])
def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, command):
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
    line = the_error(run(tmp_path, *args))
    assert re.fullmatch(
        r"error: checkpoint checkpoints/evil/last\.pt is refused: it holds a Python object "
        r"\(\S+\.open\) that could run code when loaded; charrnn loads only tensors and plain data",
        line,
    ), line
    assert not target.exists()


def test_a_format_1_checkpoint_still_loads_and_samples_the_same(work):
    ckpt = torch.load(work / "checkpoints" / "tiny" / "last.pt", weights_only=True)
    old = {**ckpt, "format_version": 1, "vocab": {"kind": "char", "chars": ckpt["vocab"]["chars"]}}
    torch.save(old, work / "old.pt")
    args = ["--seed", "ROMEO: ", "--length", "80", "--rng-seed", "3"]
    new_text = run(work, "sample", "--checkpoint", "checkpoints/tiny/last.pt", *args)
    old_text = run(work, "sample", "--checkpoint", "old.pt", *args)
    assert old_text.returncode == 0, old_text.stderr
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
def test_an_option_out_of_range_is_a_usage_error(tmp_path, args, message):
    (tmp_path / "corpus.txt").write_text(MIXED_TEXT * 30)
    result = run(tmp_path, *args)
    assert the_error(result, code=2) == message
    assert "Usage: charrnn" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


# ------------------------------------------------------------------ faults while saving


def test_a_full_disk_while_saving_keeps_the_old_checkpoints(work):
    """A size limit makes every write past 30 KB fail as a full disk would (EFBIG)."""
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
    again = run(work, "train", "corpus.txt", "--resume", "full", "--max-steps", "60")
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(run_dir / "last.pt")["step"] == 60


def test_a_full_disk_while_encoding_says_where_and_leaves_no_partial_cache(tmp_path):
    (tmp_path / "corpus.txt").write_text(MIXED_TEXT * 300, encoding="utf-8")  # 60k ids
    limit = 20 * 1024
    result = subprocess.run(
        charrnn_cmd("train", "corpus.txt", "--max-steps", "1"),
        cwd=tmp_path,
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    cache = tmp_path / "cache" / f"v{CACHE_VERSION}"
    assert the_error(result) == (
        f"error: cannot write the encoded corpus to the encoding cache ({cache}): "
        f"file too large; set CHARRNN_CACHE_DIR to a folder with room"
    )
    assert list(cache.iterdir()) == []  # no partial ids file that a later run could trust
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders")
def test_a_read_only_run_folder_keeps_the_old_checkpoints(work):
    run_dir = fresh_copy_of_tiny(work, "readonly")
    before = (run_dir / "last.pt").read_bytes()
    run_dir.chmod(0o555)
    try:
        result = run(work, "train", "corpus.txt", "--resume", "readonly", "--max-steps", "60")
    finally:
        run_dir.chmod(0o755)
    line = the_error(result)
    assert (
        line.startswith("error: cannot write checkpoints/readonly/") and "permission denied" in line
    )
    assert (run_dir / "last.pt").read_bytes() == before


# ------------------------------------------------------------------ two trainers, one run


def test_a_second_trainer_into_the_same_run_is_refused(work):
    run_dir = work / "checkpoints" / "busy"
    shutil.rmtree(run_dir, ignore_errors=True)
    first = subprocess.Popen(
        charrnn_cmd("train", "corpus.txt", *TINY_MODEL, "--max-steps", "10000000", "--run", "busy"),
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
            f"wait for it to finish, or pick another --run name"
        )
        for args in (["--run", "busy", *TINY_MODEL], ["--resume", "busy"]):
            assert the_error(run(work, "train", "corpus.txt", *args)) == message
        assert first.poll() is None  # the first trainer was not disturbed
    finally:
        first.send_signal(signal.SIGINT)
        rest = first.communicate(timeout=60)[1]
    assert first.returncode == 130, rest
    step = load_checkpoint(run_dir / "last.pt")["step"]
    # the lock died with the first process: the run resumes
    resumed = run(work, "train", "corpus.txt", "--resume", "busy", "--max-steps", str(step + 2))
    assert resumed.returncode == 0, resumed.stderr


# ------------------------------------------------------------------ big input and output


def test_a_megabyte_seed_primes_in_bounded_memory(work):
    seed = (MIXED_TEXT * 6000)[:1_000_000]  # a million characters, 1.4 MB of UTF-8
    (work / "big-seed.txt").write_text(seed, encoding="utf-8")
    (work / "small-seed.txt").write_text(seed[:100], encoding="utf-8")
    ckpt = ["sample", "--checkpoint", "checkpoints/tiny/last.pt", "--length", "100"]
    small, code, _ = peak_rss_mb(work, *ckpt, "--seed-file", "small-seed.txt")
    assert code == 0
    big, code, written = peak_rss_mb(work, *ckpt, "--seed-file", "big-seed.txt")
    assert code == 0
    printed = (work / "stdout.bin").read_text(encoding="utf-8")
    assert printed.startswith(seed[:1000]) and len(printed) >= len(seed) + 100
    # priming all at once held (S, V) logits and (S, H) outputs: over 150 MB here
    assert big - small < 80, f"peak RSS {small:.0f} MB -> {big:.0f} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_a_million_characters_stream_out_in_flat_memory(work):
    proc = subprocess.Popen(
        charrnn_cmd("sample", "--checkpoint", "checkpoints/tiny/last.pt", "--length", "1000000"),
        cwd=work,
        env=env_for(work),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    received = [0]

    def drain():
        while chunk := proc.stdout.read1(65536):
            received[0] += len(chunk)

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while received[0] < 2000:  # text is arriving: it streams, not at the end
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        start_bytes, start_rss = received[0], rss_mb(proc.pid)
        time.sleep(3.0)
        end_bytes, end_rss = received[0], rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert end_bytes > start_bytes + 5000  # still streaming
    assert end_rss - start_rss < 8, f"RSS grew {start_rss:.0f} -> {end_rss:.0f} MB"


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--num-samples", "3", "--length", "3000"],
        ["--format", "jsonl", "--num-samples", "40", "--length", "300"],
    ],
    ids=["stream", "three samples", "jsonl"],
)
def test_a_reader_that_closes_early_ends_the_program_quietly(work, extra):
    cmd = charrnn_cmd("sample", "--checkpoint", "checkpoints/tiny/last.pt", "--length", "200000")
    pipeline = shlex.join([*cmd, *extra]) + " | head -c 100"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        cwd=work,
        env=env_for(work),
        capture_output=True,
        timeout=120,
    )
    assert len(result.stdout) == 100
    assert result.returncode == 0, result.stderr  # pipefail: charrnn itself exited 0
    errors = result.stderr.decode()
    assert "Traceback" not in errors and "BrokenPipe" not in errors and "Exception" not in errors


@pytest.mark.parametrize(
    "args",
    [["info", "checkpoints/tiny/last.pt", "--json"], ["runs", "--json"]],
    ids=["info", "runs"],
)
def test_a_reader_that_is_already_gone_is_not_an_error(work, args):
    proc = subprocess.Popen(
        charrnn_cmd(*args),
        cwd=work,
        env=env_for(work),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before charrnn writes a byte
    errors = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, errors
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
