"""What a run or a resume means is the library's to say (charrnn.runs.resume): the
Python API gets the same plans and refusals as `charrnn train`, without the CLI."""

from __future__ import annotations

import dataclasses
import re

import pytest

from charrnn.data.cache import load_corpus
from charrnn.errors import CharrnnError
from charrnn.model.config import ModelConfig
from charrnn.options import option_fields
from charrnn.runs.resume import plan_configs, plan_run, refuse_finished_run
from charrnn.runs.writer import run_trainer
from charrnn.text.config import TextConfig, TokenizerConfig
from charrnn.train.config import TrainConfig
from tests.conftest import MIXED_TEXT


def default_options() -> dict:
    """Every option by field name, at its default, as the CLI hands them over."""
    return {
        f.name: f.default
        for config in (TextConfig, TokenizerConfig, ModelConfig, TrainConfig)
        for f, _ in option_fields(config)
    }


@pytest.fixture
def finished_run(tmp_path, write_corpus):
    corpus_path = write_corpus(MIXED_TEXT * 20)
    options = {**default_options(), "hidden": 16, "embed": 8, "batch_size": 4, "seq_len": 8}
    options.update(max_steps=3, eval_every=0)
    given = {"hidden", "embed", "batch_size", "seq_len", "max_steps", "eval_every"}
    plan = plan_run(corpus_path, options, given, "r", tmp_path / "ck")
    corpus = load_corpus(corpus_path, plan.text_config, plan.tokenizer_config)
    model_config, train_config = plan_configs(plan, corpus, options, given)
    run_trainer(corpus, model_config, train_config, plan.run_dir).run()
    return corpus_path, options, given, tmp_path / "ck"


def test_a_new_run_is_planned_from_the_options(tmp_path):
    plan = plan_run(tmp_path / "my text.txt", default_options(), set(), None, tmp_path)
    assert plan.checkpoint is None and plan.tokenizer is None
    assert plan.run_dir.parent == tmp_path and plan.run_dir.name.startswith("my-text-")
    assert plan.text_config == TextConfig() and plan.tokenizer_config == TokenizerConfig()


def test_a_resume_takes_the_model_from_the_checkpoint_and_the_length_from_the_command(
    finished_run,
):
    corpus_path, options, given, out = finished_run
    longer = {**options, "max_steps": 6}
    plan = plan_run(corpus_path, longer, {"max_steps"}, None, out, resume="r")
    assert plan.checkpoint["step"] == 3 and plan.tokenizer is not None
    corpus = load_corpus(corpus_path, plan.text_config, plan.tokenizer_config)
    model_config, train_config = plan_configs(plan, corpus, longer, {"max_steps"})
    assert (model_config.hidden, train_config.max_steps, train_config.batch_size) == (16, 6, 4)
    trainer = run_trainer(corpus, model_config, train_config, plan.run_dir, resume=plan.checkpoint)
    refuse_finished_run(trainer)  # 6 steps is longer: it may go on
    assert trainer.run().steps == 6


@pytest.mark.parametrize(
    "change,message",
    [
        ({"hidden": 32}, "a different model: --hidden 32 (checkpoint has 16)"),
        ({"val_frac": 0.2}, "a run keeps the validation split it started with"),
        ({"kind": "byte"}, "--tokenizer byte (checkpoint has char)"),
    ],
)
def test_a_resume_refuses_options_that_would_make_another_run(finished_run, change, message):
    corpus_path, options, given, out = finished_run
    with pytest.raises(CharrnnError, match=re.escape(message)):
        plan = plan_run(corpus_path, {**options, **change}, set(change), None, out, resume="r")
        corpus = load_corpus(corpus_path, plan.text_config, plan.tokenizer_config)
        plan_configs(plan, corpus, {**options, **change}, set(change))


def test_a_finished_run_asks_for_a_longer_length(finished_run):
    corpus_path, options, given, out = finished_run
    plan = plan_run(corpus_path, options, set(), None, out, resume="r")
    corpus = load_corpus(corpus_path, plan.text_config, plan.tokenizer_config)
    model_config, train_config = plan_configs(plan, corpus, options, set())
    trainer = run_trainer(corpus, model_config, train_config, plan.run_dir, resume=plan.checkpoint)
    with pytest.raises(CharrnnError, match="already reached its length"):
        refuse_finished_run(trainer)


def test_every_option_has_a_help_text_and_a_section():
    for config in (TextConfig, TokenizerConfig, ModelConfig, TrainConfig):
        for f, spec in option_fields(config):
            assert spec.help.endswith(".") and spec.section, f.name
    assert "vocab_size" not in {f.name for f, _ in option_fields(ModelConfig)}
    assert dataclasses.fields(ModelConfig)[0].name == "vocab_size"
