"""Training, which writes no files and prints nothing:

config.py     TrainConfig (imports nothing heavy, so help never loads torch)
loop.py       Trainer: steps, evaluation, stopping; everything it makes goes to callbacks
cadence.py    when to evaluate, and when patience has run out
callbacks.py  the Callback hooks and the stats and result they receive
protocol.py   TrainerLike: what a Trainer offers its callbacks and its checkpoint payload
threads.py    ThreadTuner: the CPU thread count, measured while training
state.py      the trainer <-> a checkpoint payload, both ways
schedule.py   the learning rate as pure functions, and resume segments
optim.py      AdamW, fused where this PyTorch has the kernel
tally.py      losses and skips kept on the device; metrics records
"""
