"""The model: ModelConfig (config.py, which imports nothing heavy, so `--help` and
config files never load torch) and CharRNN (rnn.py, the network alone)."""
