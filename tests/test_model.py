import math

import pytest
import torch

from charrnn.inference import detach_state
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_output_and_state_shapes(cell):
    model = CharRNN(ModelConfig(vocab_size=37, cell=cell, layers=2, hidden=24, embed=8))
    ids = torch.randint(0, 37, (5, 11))
    logits, state, loss = model(ids)
    assert logits.shape == (5, 11, 37)
    assert loss is None
    states = state if cell == "lstm" else (state,)
    assert len(states) == (2 if cell == "lstm" else 1)
    for s in states:
        assert s.shape == (2, 5, 24)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_initial_loss_is_about_ln_vocab_size(cell):
    torch.manual_seed(0)
    vocab = 83
    model = CharRNN(ModelConfig(vocab_size=vocab, cell=cell, layers=2, hidden=128, embed=32))
    ids = torch.randint(0, vocab, (16, 50))
    _, _, loss = model(ids, targets=torch.randint(0, vocab, (16, 50)))
    assert abs(loss.item() - math.log(vocab)) < 0.02


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_carried_state_equals_one_long_pass(cell):
    """Two windows with the state carried give what one pass over both gives:
    the property truncated BPTT and step-by-step sampling rely on."""
    torch.manual_seed(1)
    model = CharRNN(ModelConfig(vocab_size=20, cell=cell, layers=2, hidden=16, embed=4)).eval()
    ids = torch.randint(0, 20, (3, 12))
    whole, _, _ = model(ids)
    first, state, _ = model(ids[:, :5])
    second, _, _ = model(ids[:, 5:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_detached_state_cuts_the_graph():
    model = CharRNN(ModelConfig(vocab_size=10, hidden=8, embed=4))
    _, state, _ = model(torch.randint(0, 10, (2, 3)))
    assert all(s.requires_grad for s in state)
    assert not any(s.requires_grad for s in detach_state(state))


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError):
        ModelConfig(vocab_size=5, cell="transformer")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_single_step_matches_the_torch_module(cell):
    """Sampling's one-character step gives the logits and state nn.LSTM/GRU/RNN give."""
    from charrnn.inference import SingleStep

    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=30, cell=cell, layers=3, hidden=40, embed=12)).eval()
    ids = torch.randint(0, 30, (4, 15))
    with torch.inference_mode():
        whole, whole_state, _ = model(ids)
        _, state, _ = model(ids[:, :1])
        step = SingleStep(model)
        logits = []
        for t in range(1, ids.size(1)):
            out, state = step(ids[:, t], state)
            logits.append(out)
    torch.testing.assert_close(torch.stack(logits, 1), whole[:, 1:], rtol=1e-5, atol=1e-5)
    for got, want in zip(
        state if cell == "lstm" else [state],
        whole_state if cell == "lstm" else [whole_state],
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def head_inputs(kind: str, train: bool) -> torch.Tensor:
    """What the output layer sees, (B, T, H), for a model with dropout 0.5 of `kind`."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=11, hidden=32, embed=8, dropout=0.5, dropout_kind=kind))
    model.train(train)
    seen = []
    model.head.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    model(torch.randint(0, 11, (4, 40)))
    return seen[0]


def dropped_everywhere_or_nowhere(x: torch.Tensor) -> bool:
    """Whether each stream's unit is zero at every step of the window or at none."""
    zero = x == 0  # (B, T, H)
    return bool((zero.all(dim=1) | ~zero.any(dim=1)).all())


def test_locked_dropout_drops_a_unit_for_the_whole_window_and_element_dropout_does_not():
    locked, element = head_inputs("locked", True), head_inputs("element", True)
    assert dropped_everywhere_or_nowhere(locked)
    assert 0.3 < float((locked == 0).float().mean()) < 0.7
    assert not dropped_everywhere_or_nowhere(element)
    for kind in ("locked", "element"):  # evaluation and sampling: no dropout at all
        assert not bool((head_inputs(kind, False) == 0).any())


def test_the_dropout_kind_is_checked():
    with pytest.raises(ValueError, match="dropout_kind"):
        ModelConfig(vocab_size=3, dropout_kind="zoneout")
