"""charrnn: character-level RNN language models you can train on a CPU in minutes.

The public names below load lazily, so `import charrnn` (and `charrnn --help`)
stays fast and does not import torch until a model is needed.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load": "charrnn.api",
    "Model": "charrnn.api",
    "CharVocab": "charrnn.tokenizers",
    "ByteVocab": "charrnn.tokenizers",
    "SentencePieceVocab": "charrnn.tokenizers",
    "TokenizerConfig": "charrnn.tokenizers",
    "tokenizer_from_dict": "charrnn.tokenizers",
    "TextConfig": "charrnn.sources",
    "load_corpus": "charrnn.data",
    "StreamBatches": "charrnn.data",
    "ModelConfig": "charrnn.model",
    "CharRNN": "charrnn.model",
    "TrainConfig": "charrnn.train",
    "Trainer": "charrnn.train",
    "evaluate": "charrnn.train",
    "load_checkpoint": "charrnn.checkpoint",
    "restore_model": "charrnn.checkpoint",
    "generate": "charrnn.sample",
    "sample_batch": "charrnn.sample",
    "beam_search": "charrnn.sample",
    "SampleConfig": "charrnn.sample",
    "CharrnnError": "charrnn.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
