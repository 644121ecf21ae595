"""`charrnn sample`: stream, batch, beam or an interactive loop; text to stdout only."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import click
from rich.markup import escape

from charrnn.cli.console import (
    console,
    info,
    loss_unit,
    show_error,
    user_errors,
    warn,
    write_stdout,
)
from charrnn.cli.options import checkpoint_option, config_options, device_option, out_option
from charrnn.errors import CharrnnError
from charrnn.sample.config import SampleConfig


@click.command()
@checkpoint_option("A .pt file or a run folder.")
@out_option("Where to look for runs when --checkpoint is not given.")
@click.option(
    "--seed",
    default=None,
    metavar="TEXT",
    show_default="a newline",
    help="Prime text the sample continues (printed first).",
)
@click.option(
    "--seed-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="PATH",
    help="Read the prime text from a UTF-8 file instead of --seed.",
)
@click.option(
    "--length",
    type=click.IntRange(min=1),
    metavar="N",
    default=500,
    show_default=True,
    help="Characters to generate after the seed (at most, with --stop).",
)
@config_options(SampleConfig)
@click.option(
    "--num-samples",
    type=click.IntRange(min=1),
    metavar="N",
    default=1,
    show_default=True,
    help="Generate N samples together, as one batch of N streams.",
)
@click.option(
    "--beam",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    show_default="off",
    help="Beam search with K candidates for the most probable continuation of --length "
    "tokens, or of fewer that end at a --stop text (--temperature, --top-k and --top-p "
    "are ignored).",
)
@click.option(
    "--stop",
    multiple=True,
    metavar="TEXT",
    help="End a sample at the first occurrence of TEXT (not printed). Repeatable.",
)
@click.option(
    "--unknown",
    type=click.Choice(["error", "drop"]),
    default="error",
    show_default=True,
    help="Seed characters the model never saw: stop with an error, or drop them with a warning.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="text streams the samples (several are separated by a rule); jsonl prints one JSON "
    "object per sample: seed, text, characters, mean_logprob.",
)
@click.option(
    "--interactive",
    is_flag=True,
    help="A prompt loop: each line typed is a seed. Ctrl-D or an empty line ends it.",
)
@click.option(
    "--continue",
    "keep_context",
    is_flag=True,
    help="With --interactive: keep the model's state and text from turn to turn.",
)
@click.option(
    "--rng-seed",
    type=int,
    default=None,
    metavar="N",
    show_default="random",
    help="Random seed, for a sample you can reproduce.",
)
@device_option()
def sample(checkpoint, out, seed, seed_file, rng_seed, device, **options):
    """Generate text from a trained model, streaming each character as it is made.

    The text goes to stdout; everything else goes to stderr, so the output can
    be piped or redirected.

    \b
    Examples:
      charrnn sample --seed "ROMEO:" --length 500
      charrnn sample --checkpoint checkpoints/mine/best.pt --temperature 0.5 --top-p 0.9
      charrnn sample --seed "KING" --num-samples 8 --stop $'\\n\\n' --format jsonl
      charrnn sample --seed "JULIET:" --beam 8 --length 80
      charrnn sample --interactive --continue
    """
    with user_errors():
        from charrnn.checkpoint import open_model
        from charrnn.text.sources import read_text

        o = SimpleNamespace(**options)
        if seed is not None and seed_file is not None:
            raise CharrnnError("give --seed or --seed-file, not both")
        if o.keep_context and not o.interactive:
            raise CharrnnError("--continue goes with --interactive")
        if o.beam is not None and (o.num_samples > 1 or o.interactive):
            raise CharrnnError("--beam gives one sample: drop --num-samples and --interactive")
        if seed_file is not None:
            seed = read_text(seed_file, "seed file")
        model, vocab, ckpt = open_model(checkpoint, device, out)
        config = SampleConfig(o.temperature, o.top_k, o.top_p)
        if o.interactive:
            describe_checkpoint(ckpt, vocab)
            interactive_session(model, vocab, o, config, rng_seed)
            return
        show_seed = seed is not None
        if seed is None:
            seed = "\n"
            if vocab.unknown(seed):
                raise CharrnnError("the model has no newline character; give a --seed")
        seed = readable_seed(vocab, seed, o.unknown)
        if not seed:
            raise CharrnnError("nothing is left of the seed once unknown characters are dropped")
        shown_seed = seed if show_seed else ""
        describe_checkpoint(ckpt, vocab)
        if o.beam is not None:
            write_samples([beam_sample(model, vocab, seed, o)], shown_seed, o.output_format)
        elif o.num_samples == 1 and o.output_format == "text":
            stream_sample(model, vocab, seed, shown_seed, o, config, rng_seed)
        else:
            from charrnn.sample.generate import sample_batch

            samples = sample_batch(
                model, vocab, seed, o.length, o.num_samples, config, rng_seed, o.stop
            )
            write_samples(samples, shown_seed, o.output_format)


def describe_checkpoint(ckpt, vocab) -> None:
    val = ckpt.get("val_loss")
    val_text = f", val {val:.3f} nats/{loss_unit(vocab)}" if val is not None else ""
    info(f"[dim]{escape(ckpt['path'])} (step {ckpt.get('step', 0):,}{val_text})[/]")


def readable_seed(vocab, seed: str, policy: str) -> str:
    """The seed without characters the model never saw (--unknown drop, with a
    warning that names them), or an error that lists them (--unknown error)."""
    from charrnn.sample.streams import encode_seed

    kept, dropped = encode_seed(vocab, seed, policy)
    if dropped:
        names = escape(", ".join(repr(c) for c in dropped))
        warn(f"dropped seed characters the model never saw: {names}")
    return kept


def stream_sample(model, vocab, seed, shown_seed, o, config, rng_seed) -> None:
    from charrnn.sample.generate import generate

    write_stream(shown_seed, generate(model, vocab, seed, o.length, config, rng_seed, o.stop))


def write_stream(prefix: str, pieces) -> None:
    """`prefix`, then each piece as it is made, ending on a newline."""
    write_stdout(prefix)
    last = prefix[-1:] or "\n"
    for piece in pieces:
        write_stdout(piece)
        last = piece[-1]
    if last != "\n":
        write_stdout("\n")


def beam_sample(model, vocab, seed, o):
    from charrnn.sample.beam import beam_search

    return beam_search(model, vocab, seed, o.length, o.beam, o.stop)


SAMPLE_RULE = "\n" + "─" * 40 + "\n"


def write_samples(samples, shown_seed: str, output_format: str) -> None:
    """Whole samples: plain text between rules, or one JSON object per line."""
    if output_format == "jsonl":
        import json

        for s in samples:
            mean = s.mean_logprob
            record = {
                "seed": s.seed,
                "text": s.text,
                "characters": s.characters,
                "mean_logprob": None if mean is None or math.isnan(mean) else round(mean, 6),
            }
            write_stdout(json.dumps(record, ensure_ascii=False) + "\n")
        return
    for i, s in enumerate(samples):
        if i:
            write_stdout(SAMPLE_RULE)
        text = shown_seed + s.text
        write_stdout(text if text.endswith("\n") else text + "\n")


def interactive_session(model, vocab, o, config, rng_seed) -> None:
    """Each line typed is a seed; the continuation streams back. With --continue the
    model keeps its state (and so the whole conversation) across turns."""
    from charrnn.sample.generate import continue_stream
    from charrnn.sample.streams import Streams

    streams = None
    hint = "keeps the context" if o.keep_context else "starts afresh each line"
    info(f"[dim]type a seed and press Enter; Ctrl-D or an empty line ends ({hint})[/]")
    while True:
        try:
            line = console.input("[bold]> [/]")
        except EOFError:
            break
        if not line:
            break
        try:
            line = readable_seed(vocab, line, o.unknown)
        except CharrnnError as e:  # a bad line is reported; the session goes on
            show_error(str(e))
            continue
        if not line:
            continue
        if streams is None or not o.keep_context:
            streams = Streams(model, vocab, rng_seed)
        streams.feed(line)
        write_stream(line, continue_stream(streams, o.length, config, o.stop))
