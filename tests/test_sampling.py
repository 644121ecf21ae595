"""Sampling controls: top-k, top-p, beam search, batches, stop strings, unknown
seed characters, eval, the Python API and the interactive prompt."""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pexpect
import pytest
import torch
import torch.nn.functional as F

import charrnn
from charrnn.checkpoint import load_checkpoint
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.sample.beam import beam_search
from charrnn.sample.streams import StopMatcher, filter_logits
from charrnn.text.tokenizers import CharVocab
from tests.conftest import MIXED_TEXT, TINY_MODEL, invoke, no_loss_plot


@torch.inference_mode()
def sequence_logprob(model, vocab, seed: str, text: str) -> float:
    """Summed log-probability (nats) of `text` after `seed`, in one forward pass:
    an oracle for the scores beam search keeps step by step."""
    device = next(model.parameters()).device
    seed_ids, text_ids = vocab.encode(seed), vocab.encode(text)
    both = np.concatenate([seed_ids, text_ids]).astype(np.int64)
    ids = torch.from_numpy(both).to(device)[None]  # (1, S+T)
    logits, _, _ = model(ids[:, :-1])  # (1, S+T-1, V)
    logp = F.log_softmax(logits.double(), dim=-1)[0, len(seed_ids) - 1 :]  # (T, V)
    targets = ids[0, len(seed_ids) :]
    return float(logp.gather(1, targets[:, None]).sum())


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small model trained through the CLI once for this module's tests."""
    root = tmp_path_factory.mktemp("sampling")
    corpus = root / "corpus.txt"
    corpus.write_text(MIXED_TEXT * 30, encoding="utf-8")
    # enough steps that greedy text is varied (it carries the emoji and the Hangul)
    args = ["train", str(corpus), *TINY_MODEL, "--max-steps", "300", "--eval-every", "100"]
    with no_loss_plot():
        result = invoke(
            *args, "--lr", "1e-2", "--out", root, "--name", "m",
            env={"CHARRNN_CACHE_DIR": str(root / "cache")},
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "m" / "best.pt"


def sample_cli(run_cli, model_path, *args, expect=0):
    return run_cli("sample", "--checkpoint", model_path, *args, expect=expect)


# ------------------------------------------------------------------ filters


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])  # ranked: 1, 3, 0, 2
    logits = probs.log()

    def kept(p):
        return set(torch.isfinite(filter_logits(logits, top_p=p))[0].nonzero()[:, 0].tolist())

    assert kept(0.8) == {1, 3}  # 0.5 + 0.3 reaches 0.8
    assert kept(0.81) == {1, 3, 0}
    assert kept(0.5) == {1}
    assert kept(1e-6) == {1}  # the most likely always survives
    assert kept(1.0) == {0, 1, 2, 3}


def test_top_k_keeps_the_k_most_likely():
    logits = torch.tensor([[0.1, 2.0, -1.0, 1.5], [3.0, 0.0, 1.0, 2.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[False, True, False, True], [True, False, False, True]]
    assert torch.isfinite(filter_logits(logits, top_k=10)).all()


# ------------------------------------------------------------------ beam search


def bigram_model(table: dict[str, dict[str, float]]) -> tuple[CharRNN, CharVocab]:
    """An RNN whose next-character distribution depends only on the last character:
    the hidden state is a one-hot of it, and the head holds log-probabilities."""
    vocab = CharVocab("".join(sorted(table)))
    v = len(vocab)
    model = CharRNN(ModelConfig(vocab_size=v, cell="rnn", hidden=v, embed=v))
    with torch.no_grad():
        model.embed.weight.copy_(torch.eye(v) * 20)  # tanh(20) is 1.0 in float32
        model.rnn.weight_ih_l0.copy_(torch.eye(v))
        model.rnn.weight_hh_l0.zero_()
        model.rnn.bias_ih_l0.zero_()
        model.rnn.bias_hh_l0.zero_()
        head = torch.full((v, v), -30.0)  # (next, previous)
        for prev, nexts in table.items():
            for nxt, p in nexts.items():
                head[vocab.chars.index(nxt), vocab.chars.index(prev)] = math.log(p)
        model.head.weight.copy_(head)
        model.head.bias.zero_()
    return model.eval(), vocab


def test_beam_search_finds_what_greedy_misses():
    # greedy takes a->b (0.6), then only 1/3 each; a->c (0.4) then c->c (0.99) is likelier
    model, vocab = bigram_model(
        {
            "a": {"b": 0.6, "c": 0.4},
            "b": {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3},
            "c": {"c": 0.99, "a": 0.01},
        }
    )
    greedy = beam_search(model, vocab, "a", 2, beam=1)
    best = beam_search(model, vocab, "a", 2, beam=3)
    assert greedy.text[0] == "b" and best.text == "cc"
    assert best.logprob >= greedy.logprob
    assert best.logprob == pytest.approx(math.log(0.4 * 0.99), abs=1e-4)
    assert best.logprob == pytest.approx(sequence_logprob(model, vocab, "a", best.text), abs=1e-6)


def test_beam_is_at_least_as_probable_as_greedy_on_a_trained_model(model_path, run_cli):
    m = charrnn.load(model_path, device="cpu")
    greedy = "".join(m.generate("ROMEO:", length=30, temperature=0))
    beamed = m.beam("ROMEO:", length=30, beam=6)
    assert len(beamed) == 30
    lp = [sequence_logprob(m.model, m.vocab, "ROMEO:", t) for t in (greedy, beamed)]
    assert lp[1] >= lp[0] - 1e-6
    out = sample_cli(run_cli, model_path, "--seed", "ROMEO:", "--length", 30, "--beam", 6)
    assert out.stdout == "ROMEO:" + beamed + ("" if beamed.endswith("\n") else "\n")


# ------------------------------------------------------------------ CLI sampling


def test_rng_seed_reproduces_and_top_k_1_is_greedy(model_path, run_cli):
    args = ["--seed", "ROMEO:", "--length", 80, "--top-p", 0.95, "--top-k", 20]
    a = sample_cli(run_cli, model_path, *args, "--rng-seed", 4).stdout
    b = sample_cli(run_cli, model_path, *args, "--rng-seed", 4).stdout
    c = sample_cli(run_cli, model_path, *args, "--rng-seed", 5, "--temperature", 1.5).stdout
    assert a == b and a != c
    greedy = sample_cli(run_cli, model_path, "--seed", "ROMEO:", "--temperature", 0).stdout
    top1 = [
        sample_cli(run_cli, model_path, "--seed", "ROMEO:", "--top-k", 1, "--rng-seed", s).stdout
        for s in (1, 2)
    ]
    assert top1 == [greedy, greedy]


def jsonl(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_batched_samples_reproduce_and_differ(model_path, run_cli):
    args = ["--seed", "NURSE:", "--length", 60, "--num-samples", 6, "--format", "jsonl"]
    first = jsonl(sample_cli(run_cli, model_path, *args, "--rng-seed", 11))
    again = jsonl(sample_cli(run_cli, model_path, *args, "--rng-seed", 11))
    assert first == again and len(first) == 6
    assert len({s["text"] for s in first}) > 1  # temperature 0.8: the streams differ
    for s in first:
        assert s["seed"] == "NURSE:" and s["characters"] == len(s["text"]) == 60
        assert s["mean_logprob"] < 0 and math.isfinite(s["mean_logprob"])


def test_batched_greedy_samples_equal_the_single_stream(model_path, run_cli):
    single = sample_cli(run_cli, model_path, "--seed", "줄리엣:", "--temperature", 0).stdout
    args = ["--seed", "줄리엣:", "--temperature", 0, "--num-samples", 4, "--format", "jsonl"]
    batch = jsonl(sample_cli(run_cli, model_path, *args))
    assert len(batch) == 4
    for s in batch:
        text = "줄리엣:" + s["text"]
        assert single == (text if text.endswith("\n") else text + "\n")


def test_text_batches_are_separated_by_a_rule(model_path, run_cli):
    out = sample_cli(run_cli, model_path, "--seed", "R", "--length", 20, "--num-samples", 3)
    assert out.stdout.count("─" * 40) == 2 and out.stdout.count("\nR") + 1 >= 3


def test_stop_strings_end_a_sample(model_path, run_cli):
    greedy = sample_cli(run_cli, model_path, "--seed", "ROMEO:", "--temperature", 0).stdout
    text = greedy.removeprefix("ROMEO:")
    stop = text[10:13]  # a piece the greedy continuation is sure to produce
    first = text.index(stop)
    out = sample_cli(
        run_cli, model_path, "--seed", "ROMEO:", "--temperature", 0, "--stop", stop, "--stop", "🦄"
    ).stdout
    assert out == "ROMEO:" + text[:first] + ("" if text[:first].endswith("\n") else "\n")
    batch = jsonl(
        sample_cli(
            run_cli,
            model_path,
            *["--seed", "ROMEO:", "--temperature", 0, "--stop", stop],
            *["--num-samples", 2, "--format", "jsonl"],
        )
    )
    assert [s["text"] for s in batch] == [text[:first]] * 2


def test_stop_matcher_holds_back_a_possible_stop():
    m = StopMatcher(["END", "\n\n"])
    shown = [m.push(c) for c in "abE"]
    assert shown == ["a", "b", ""]  # "E" might start "END"
    assert m.push("x") == "Ex"
    assert [m.push(c) for c in "yEN"] == ["y", "", ""]
    assert m.push("D") == "" and m.done
    m = StopMatcher(["ab"])
    assert "".join(m.push(c) for c in "xa") + m.flush() == "xa"  # no stop: nothing is lost


def test_unknown_seed_characters(model_path, run_cli):
    err = sample_cli(run_cli, model_path, "--seed", "ROMEO Q¿", expect=1)
    assert "never saw" in err.stderr and "'Q'" in err.stderr and err.stdout == ""
    drop = sample_cli(
        run_cli, model_path, "--seed", "ROMEO Q¿", "--unknown", "drop", "--length", 10
    )
    assert drop.stdout.startswith("ROMEO ") and "Q" not in drop.stdout[:6]
    assert "dropped" in drop.stderr and "'Q'" in drop.stderr and "'¿'" in drop.stderr
    gone = sample_cli(run_cli, model_path, "--seed", "QQ", "--unknown", "drop", expect=1)
    assert "nothing is left of the seed" in gone.stderr


def test_seed_file(model_path, run_cli, tmp_path):
    seed = (MIXED_TEXT * 20)[:3000]
    path = tmp_path / "seed.txt"
    path.write_text(seed, encoding="utf-8")
    out = sample_cli(run_cli, model_path, "--seed-file", path, "--length", 20)
    assert out.stdout.startswith(seed) and len(out.stdout) >= len(seed) + 20
    both = sample_cli(run_cli, model_path, "--seed-file", path, "--seed", "x", expect=1)
    assert "not both" in both.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--temperature", "1e-4"],
        ["--temperature", "100"],
        ["--top-p", "1e-6"],
        ["--top-k", "1"],
        ["--temperature", "100", "--top-p", "1e-6", "--num-samples", "3"],
    ],
)
def test_extreme_settings_never_crash(model_path, run_cli, args):
    out = sample_cli(run_cli, model_path, "--seed", "R", "--length", 50, "--rng-seed", 1, *args)
    vocab = set(load_checkpoint(model_path)["vocab"]["chars"])
    body = out.stdout.replace("─" * 40, "")
    assert set(body) <= vocab | {"\n"} and "nan" not in body.lower()


@pytest.mark.parametrize(
    "args,option",
    [
        (["--top-p", "0"], "--top-p"),
        (["--top-p", "1.5"], "--top-p"),
        (["--top-k", "0"], "--top-k"),
        (["--num-samples", "0"], "--num-samples"),
        (["--beam", "0"], "--beam"),
    ],
)
def test_out_of_range_sampling_options(run_cli, args, option):
    result = run_cli("sample", *args, expect=2)
    assert f"Invalid value for '{option}'" in result.stderr


# ------------------------------------------------------------------ eval and the API


def test_eval_equals_the_trainers_validation_loss(tmp_path, write_corpus, run_cli):
    text = MIXED_TEXT * 30
    corpus = write_corpus(text)
    out = tmp_path / "ck"
    run_cli("train", corpus, *TINY_MODEL, "--max-steps", 20, "--out", out, "--name", "e")
    ckpt = load_checkpoint(out / "e" / "last.pt")
    held_out = tmp_path / "val.txt"
    held_out.write_text(text[int(len(text) * 0.9) :], encoding="utf-8")
    result = run_cli("eval", held_out, "--checkpoint", out / "e" / "last.pt", "--json")
    report = json.loads(result.stdout)
    assert report["loss"] == pytest.approx(ckpt["val_loss"], rel=1e-9)
    assert report["unknown"] == 0 and report["tokens"] == len(text) - int(len(text) * 0.9) - 1
    table = run_cli("eval", held_out, "--checkpoint", out / "e" / "last.pt").stderr
    assert f"{ckpt['val_loss']:.4f} nats/char" in table and "perplexity" in table

    odd = tmp_path / "odd.txt"
    odd.write_text("ROMEO: Qué? ROMEO:", encoding="utf-8")
    report = json.loads(run_cli("eval", odd, "--checkpoint", out / "e", "--json").stdout)
    assert report["unknown"] == 2 and sorted(report["unknown_chars"]) == ["Q", "é"]
    table = run_cli("eval", odd, "--checkpoint", out / "e").stderr
    assert "left out" in table


def test_python_api(model_path, run_cli, tmp_path):
    m = charrnn.load(model_path, device="cpu")
    pieces = list(m.generate("ROMEO:", length=40, temperature=0.8, rng_seed=3))
    assert len("".join(pieces)) == 40
    cli_text = sample_cli(
        run_cli, model_path, "--seed", "ROMEO:", "--length", 40, "--rng-seed", 3
    ).stdout
    assert cli_text.startswith("ROMEO:" + "".join(pieces))
    samples = m.sample("ROMEO:", length=25, num_samples=4, rng_seed=1)
    assert len(samples) == 4 and all(len(s) == 25 for s in samples)
    assert samples == m.sample("ROMEO:", length=25, num_samples=4, rng_seed=1)
    text = MIXED_TEXT * 3
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    report = json.loads(run_cli("eval", path, "--checkpoint", model_path, "--json").stdout)
    assert m.score(text) == pytest.approx(report["loss"])
    with pytest.raises(charrnn.CharrnnError, match="never saw"):
        m.score("Q" + text)


# ------------------------------------------------------------------ interactive, in a pty


def spawn_interactive(model_path, *args) -> pexpect.spawn:
    cmd = ["-m", "charrnn", "sample", "--checkpoint", str(model_path), "--interactive"]
    return pexpect.spawn(
        sys.executable, [*cmd, *map(str, args)], encoding="utf-8", timeout=60, echo=False
    )


def read_turn(child: pexpect.spawn) -> str:
    """What the program wrote before its next prompt, without terminal colours."""
    child.expect_exact("> ")
    return re.sub(r"\x1b\[[0-9;]*m", "", child.before)


def test_interactive_session_in_a_pseudo_terminal(model_path):
    m = charrnn.load(model_path, device="cpu")
    child = spawn_interactive(model_path, "--length", 30, "--temperature", 0)
    read_turn(child)
    child.sendline("ROMEO:")
    reply = read_turn(child).replace("\r\n", "\n")
    expected = "ROMEO:" + "".join(m.generate("ROMEO:", length=30, temperature=0))
    assert reply.strip("\n") == expected.strip("\n")
    child.sendline("NURSE:")  # without --continue each line starts afresh
    reply = read_turn(child).replace("\r\n", "\n")
    expected = "NURSE:" + "".join(m.generate("NURSE:", length=30, temperature=0))
    assert reply.strip("\n") == expected.strip("\n")
    child.sendline("")  # an empty line ends the session
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_interactive_continue_keeps_the_context(model_path, run_cli):
    """The same prompt loop, in this process: lines come from stdin, which then ends
    (Ctrl-D); the terminal itself is test_interactive_session_in_a_pseudo_terminal's."""
    m = charrnn.load(model_path, device="cpu")
    args = ["--interactive", "--length", 25, "--temperature", 0, "--continue"]
    line = "줄리엣: 이름이"
    result = run_cli("sample", "--checkpoint", model_path, *args, input=f"{line}\n?\n")
    assert result.stderr.count("> ") == 3  # a prompt per line, and one that met the end

    def greedy(context: str) -> str:
        return "".join(m.generate(context, length=25, temperature=0))

    def shown(text: str) -> str:  # a turn ends its line
        return text if text.endswith("\n") else text + "\n"

    first = line + greedy(line)
    kept = "?" + greedy(first + "?")  # the model has read the whole first turn
    fresh = "?" + greedy("?")
    assert kept != fresh  # after "?" alone the model writes English; in context, Korean
    assert result.stdout == shown(first) + shown(kept)


def test_the_readme_python_example_runs(model_path, capsys):
    readme = (Path(__file__).parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    api = readme.split("# Python API", 1)[1]  # the first example of that section
    code = api.split("```python\n", 1)[1].split("```", 1)[0]
    assert "charrnn.load(" in code and "m.score(" in code
    exec(code.replace("checkpoints/shakespeare/best.pt", str(model_path)), {})
    assert len(capsys.readouterr().out) == 200  # the generate loop printed its 200 characters


# ------------------------------------------------------------------ the model's mode


def test_sampling_leaves_a_training_model_in_training_mode_and_samples_without_dropout():
    """A callback that samples during training must not turn dropout off for the rest
    of the run; and the sample itself is the eval-mode one (no dropout while sampling)."""
    from charrnn.sample.generate import sample_batch
    from charrnn.sample.streams import Streams

    torch.manual_seed(0)
    vocab = CharVocab.from_code_points(np.array([ord(c) for c in "abcdefgh"]))
    model = CharRNN(ModelConfig(len(vocab), layers=2, hidden=16, embed=4, dropout=0.5))
    model.train()
    texts = []
    for mode in ("train", "eval", "train"):
        model.train(mode == "train")
        texts.append(sample_batch(model, vocab, "abc", 20, 2, rng_seed=3)[0].text)
        assert model.training == (mode == "train")
    assert texts[0] == texts[1] == texts[2]
    model.train()
    streams = Streams(model, vocab, rng_seed=1)
    streams.feed("abc")
    streams.step(charrnn.SampleConfig())
    assert model.training
