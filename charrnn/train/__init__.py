"""Training: the loop (loop.py) over steps, evaluation and stopping, reporting through
callbacks; TrainConfig (config.py, which imports nothing heavy); the learning-rate
schedule as pure functions (schedule.py); the optimizer (optim.py); the step tally
(tally.py)."""
