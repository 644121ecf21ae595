"""`charrnn` as torchrun starts it, with one rank made odd on purpose, to show that
every decision is the same on every rank. Set by the environment of the test:

  CHARRNN_TEST_FAST_CLOCK=R       rank R's clock runs at twice the speed
  CHARRNN_TEST_NAN_STEPS=R:S,...  rank R's loss is NaN at steps S (its gradient stays
                                  finite, so only an agreed skip keeps the ranks alike)
  CHARRNN_TEST_FAIL=R:S           rank R alone fails (a CharrnnError) at step S
  CHARRNN_TEST_WEIGHTS=DIR        each rank saves its final weights as DIR/rankN.pt
"""

import os
import time
import types

RANK = int(os.environ["RANK"])


def fast_clock() -> None:
    import charrnn.train.loop

    begun = time.perf_counter()
    shim = types.SimpleNamespace(**vars(time))
    shim.perf_counter = lambda: begun + 2 * (time.perf_counter() - begun)
    charrnn.train.loop.time = shim


def nan_losses(steps: set[int]) -> None:
    from charrnn.model.rnn import CharRNN

    forward, calls = CharRNN.forward, [0]

    def odd_forward(self, x, state=None, targets=None):
        logits, state, loss = forward(self, x, state, targets)
        if self.training and targets is not None:
            calls[0] += 1
            if calls[0] in steps:
                loss = loss + float("nan")  # a constant: the gradient stays finite
        return logits, state, loss

    CharRNN.forward = odd_forward


def fail_at(step: int) -> None:
    from charrnn.errors import CharrnnError
    from charrnn.train.loop import Trainer

    train_step = Trainer._train_step

    def failing_step(self, lr):
        if self.step == step:
            raise CharrnnError(f"a failure on rank {RANK} alone")
        train_step(self, lr)

    Trainer._train_step = failing_step


def save_weights(folder: str) -> None:
    import torch

    from charrnn.train.loop import Trainer

    run = Trainer.run

    def run_and_save(self):
        result = run(self)
        torch.save(self.model.state_dict(), os.path.join(folder, f"rank{RANK}.pt"))
        return result

    Trainer.run = run_and_save


if os.environ.get("CHARRNN_TEST_FAST_CLOCK") == str(RANK):
    fast_clock()
rank, _, steps = os.environ.get("CHARRNN_TEST_NAN_STEPS", "").partition(":")
if rank == str(RANK):
    nan_losses({int(s) for s in steps.split(",")})

rank, _, step = os.environ.get("CHARRNN_TEST_FAIL", "").partition(":")
if rank == str(RANK):
    fail_at(int(step))
if folder := os.environ.get("CHARRNN_TEST_WEIGHTS"):
    save_weights(folder)

from charrnn.cli import main  # noqa: E402

main()
