"""Data: prepared text -> ids cached by content -> batches.

encode.py   the counting and encoding passes (bounded memory), the SentencePiece split
cache.py    EncodedCorpus: the memory-mapped id file, its cache entry, the split
batches.py  TBPTT stream batches, evaluation windows, size checks
"""
