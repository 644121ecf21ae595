"""Text: corpus files -> prepared text (sources) -> ids (tokenizers: char, byte, SentencePiece).

config.py holds TextConfig and TokenizerConfig, which import nothing heavy.
"""
