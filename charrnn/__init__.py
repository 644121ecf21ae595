"""charrnn: character-level RNN language models you can train on a CPU in minutes.

The public names below load lazily, so `import charrnn` (and `charrnn --help`)
stays fast and does not import torch until a model is needed.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load": "charrnn.api",
    "Model": "charrnn.api",
    "CharVocab": "charrnn.text.tokenizers",
    "ByteVocab": "charrnn.text.tokenizers",
    "SentencePieceVocab": "charrnn.text.sentencepiece",
    "TokenizerConfig": "charrnn.text.config",
    "tokenizer_from_dict": "charrnn.text.tokenizers",
    "TextConfig": "charrnn.text.config",
    "load_corpus": "charrnn.data.cache",
    "StreamBatches": "charrnn.data.batches",
    "ModelConfig": "charrnn.model.config",
    "CharRNN": "charrnn.model.rnn",
    "TrainConfig": "charrnn.train.config",
    "Trainer": "charrnn.train.loop",
    "score_text": "charrnn.evaluate",
    "run_trainer": "charrnn.runs.writer",
    "plan_run": "charrnn.runs.resume",
    "prepare_run": "charrnn.runs.start",
    "load_checkpoint": "charrnn.checkpoint",
    "restore_model": "charrnn.checkpoint",
    "generate": "charrnn.sample.generate",
    "sample_batch": "charrnn.sample.generate",
    "beam_search": "charrnn.sample.beam",
    "SampleConfig": "charrnn.sample.config",
    "CharrnnError": "charrnn.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
