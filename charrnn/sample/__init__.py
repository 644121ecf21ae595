"""Sampling: how a character is drawn (config.py, which imports nothing heavy), streams
that step together (streams.py), generation with stop strings (generate.py), and beam
search (beam.py)."""
