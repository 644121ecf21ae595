"""The `charrnn` command line: click commands over the library, one module per group.

    console.py   the one rich Console (stderr), one-line errors, stdout for text
    options.py   click options made from the config fields; help in sections
    progress.py  the encoding and training progress displays
    train.py     charrnn train
    sample.py    charrnn sample
    inspect.py   charrnn eval, runs, info, plot
    serve.py     charrnn serve (the server itself is charrnn.serve)
    export.py    charrnn export (the folder itself is charrnn.export)
    docs.py      docs/options.md's option tables, made from the commands

Only this package imports click or rich. Library modules that load torch are
imported inside the commands, so `charrnn --help` stays fast.
"""

from __future__ import annotations

import click

from charrnn import __version__
from charrnn.cli.export import export
from charrnn.cli.inspect import eval_command, info_command, plot, runs
from charrnn.cli.sample import sample
from charrnn.cli.serve import serve
from charrnn.cli.train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Character-level RNN language models: train on any text, then sample from it.

    \b
    Examples:
      charrnn train corpora/shakespeare.txt --time 3m
      charrnn sample --seed "ROMEO:" --length 500
      charrnn serve
      charrnn export site/
      charrnn train --help
    """


for command in (train, sample, eval_command, runs, info_command, plot, serve, export):
    cli.add_command(command)


def main():
    cli(prog_name="charrnn")
