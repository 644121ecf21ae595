"""`charrnn` as torchrun starts it, with one rank made odd on purpose, to show that
every decision is the same on every rank. Set by the environment of the test:

  CHARRNN_TEST_FAST_CLOCK=R       rank R's clock runs at twice the speed
  CHARRNN_TEST_NAN_STEPS=R:S,...  rank R's loss is NaN at steps S (its gradient stays
                                  finite, so only an agreed skip keeps the ranks alike)
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


if os.environ.get("CHARRNN_TEST_FAST_CLOCK") == str(RANK):
    fast_clock()
rank, _, steps = os.environ.get("CHARRNN_TEST_NAN_STEPS", "").partition(":")
if rank == str(RANK):
    nan_losses({int(s) for s in steps.split(",")})

from charrnn.cli import main  # noqa: E402

main()
