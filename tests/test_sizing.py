"""The sizing rule (charrnn.runs.sizing) on made-up machines: a slow CPU, a bf16 CPU, a
GPU; a tiny corpus and a huge one. Each test checks a property the rule must have,
so a change to a fitted constant keeps them true or fails here for a reason."""

from __future__ import annotations

import random

import pytest

from charrnn.runs import sizing
from charrnn.runs.planner import make_plan
from charrnn.runs.sizing import Budget, Candidate, Machine, parameter_count
from tests.test_plan import default_options

SHAKESPEARE = 1_003_854  # training characters of tinyshakespeare
CONSTITUTION = 16_995  # of the Korean constitution


def cpu(fp32_1x512: float, bf16_ratio: float | None = None, batch_gain: float = 0.3):
    """A CPU whose 1x512 LSTM at batch 32 trains `fp32_1x512` tokens/s; bf16 runs
    `bf16_ratio` times as fast (None: bf16 does not run); a larger batch is faster by
    (B/32)**batch_gain; a step costs in proportion to the weights."""
    reference = Candidate("lstm", 1, 512, 64, 32, 50, "fp32").cost(65)

    def measure(c: Candidate) -> float | None:
        speed = fp32_1x512 * reference / c.cost(65) * (c.batch_size / 32) ** batch_gain
        return speed * (bf16_ratio if c.precision == "bf16" else 1)

    precisions = ("fp32",) if bf16_ratio is None else ("fp32", "bf16")
    return Machine("cpu", precisions, measure)


def gpu(tokens_per_s_at_b64: float = 400_000.0):
    """A GPU: throughput grows with the batch and barely with the model, up to a point."""

    def measure(c: Candidate) -> float | None:
        saturation = min(1.0, 4e6 / c.cost(65) * c.batch_size / 64)
        speed = tokens_per_s_at_b64 * c.batch_size / 64 * min(1.0, 0.3 + 0.7 * saturation)
        return speed * (1.8 if c.precision == "bf16" else 1)

    return Machine("cuda", ("fp32", "bf16"), measure)


def plan_for(machine, train_tokens=SHAKESPEARE, seconds=171.0, given=None, steps=None, world=1):
    options = {**default_options(), **(given or {})}
    budget = Budget(seconds, steps, world)
    return make_plan(options, set(given or {}), train_tokens, 65, budget, machine)


def size(plan) -> int:
    o = plan.options()
    return parameter_count(sizing_config(o))


def sizing_config(o):
    from charrnn.model.config import ModelConfig

    return ModelConfig(65, o["cell"], o["layers"], o["hidden"], o["embed"])


def test_bf16_is_chosen_because_it_measured_faster_not_by_a_flag():
    assert plan_for(cpu(22_000, bf16_ratio=2.3)).options()["precision"] == "bf16"
    # the AVX512-BF16 CPUs where bf16 measured slower than fp32: fp32, though bf16 runs
    assert plan_for(cpu(22_000, bf16_ratio=0.8)).options()["precision"] == "fp32"
    assert plan_for(cpu(22_000, bf16_ratio=1.05)).options()["precision"] == "fp32"
    # an AVX2-only CPU: bf16 is never measured (emulated, it would take minutes)
    machine = cpu(22_000)
    asked = []
    measure = machine.measure
    machine.measure = lambda c: asked.append(c.precision) or measure(c)
    assert plan_for(machine).options()["precision"] == "fp32"
    assert "bf16" not in asked


def test_a_faster_machine_gets_a_larger_model_for_the_same_budget():
    slow = plan_for(cpu(8_000))
    bf16 = plan_for(cpu(22_000, bf16_ratio=2.3))
    assert size(slow) < size(bf16)
    assert plan_for(gpu()).options()["batch_size"] >= 128
    assert size(plan_for(gpu())) > size(bf16)


def test_a_longer_budget_gets_a_larger_model():
    machine = cpu(22_000, bf16_ratio=2.3)
    sizes = [size(plan_for(machine, seconds=s)) for s in (40, 171, 3600)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_a_tiny_corpus_is_regularised_and_stops_once_more_passes_cannot_help():
    plan = plan_for(cpu(22_000, bf16_ratio=2.3), train_tokens=CONSTITUTION, seconds=57)
    o = plan.options()
    assert plan.passes > sizing.MAX_PASSES
    assert o["dropout"] >= 0.3 and o["weight_decay"] > 0
    assert o["patience"] is not None
    # the run ends after MAX_PASSES passes, long before the budget
    assert (
        o["max_steps"] * o["batch_size"] * o["seq_len"] <= 1.01 * sizing.MAX_PASSES * CONSTITUTION
    )
    # and the model is small: far fewer weights than the tinyshakespeare plan's
    assert size(plan) * 4 < size(plan_for(cpu(22_000, bf16_ratio=2.3)))


def test_a_huge_corpus_is_not_regularised_and_runs_the_whole_budget():
    plan = plan_for(cpu(22_000, bf16_ratio=2.3), train_tokens=2_000_000_000, seconds=3600)
    o = plan.options()
    assert plan.passes < 1
    assert o["dropout"] == 0 and o["weight_decay"] == 0
    assert "max_steps" not in plan.choices and "patience" not in plan.choices


def test_given_options_are_kept_and_the_rest_fitted_around_them():
    plan = plan_for(cpu(22_000, bf16_ratio=2.3), given={"hidden": 300, "precision": "fp32"})
    assert plan.choices["hidden"].value == 300 and plan.choices["hidden"].source == "given"
    assert plan.choices["precision"].value == "fp32"
    assert plan.choices["layers"].source == "fitted"
    assert plan.choices["lr"].source == "fitted"
    # a given --patience or --max-steps is never replaced, however many passes
    tiny = plan_for(cpu(22_000), train_tokens=CONSTITUTION, given={"patience": 50})
    assert "patience" not in tiny.choices and "max_steps" in tiny.choices


def test_timing_noise_within_the_grid_does_not_change_the_plan():
    """Speeds are snapped to a grid 19% apart: noise of a few percent around a grid
    point (the plan of a machine measured exactly there) changes nothing."""
    rng = random.Random(0)

    def snap(speed):
        return sizing.snap(speed, sizing.SPEED_STEPS)

    on_grid = snap(22_000)
    for corpus, seconds in [(SHAKESPEARE, 171), (SHAKESPEARE, 43), (CONSTITUTION, 57)]:
        plans = set()
        for _ in range(20):
            machine = cpu(on_grid, bf16_ratio=2**1.25)
            exact = machine.measure  # every true speed on the grid, measured with noise
            machine.measure = lambda c, m=exact: snap(m(c)) * rng.uniform(0.96, 1.04)
            plans.add(tuple(sorted(plan_for(machine, corpus, seconds).options().items())))
        assert len(plans) == 1, (corpus, seconds, plans)


def test_the_same_machine_plans_alike_and_a_busy_cache_is_measured_afresh(tmp_path, monkeypatch):
    """Later plans reuse the cached speeds, so noise cannot flip them; a cache filled
    while the cores were busy (every step ten times slower) is caught by the first
    measurement of the next plan, and measured again."""
    import torch

    from charrnn.runs import probe

    rng = random.Random(2)
    slowdown, calls = [1.0], []

    def measured(candidate, vocab_size, device, seconds):
        calls.append(candidate)
        noise = rng.uniform(0.8, 1.2)
        return cpu(22_000, bf16_ratio=2.3).measure(candidate) * noise / slowdown[0]

    monkeypatch.setattr(probe, "measure", measured)

    def plan_now(busy: float, cache=tmp_path):
        slowdown[0] = busy
        machine, measuring = probe.probe_machine(torch.device("cpu"), 65, 9.0, cache)
        machine.precisions = ("fp32", "bf16")
        plan = plan_for(machine).options()
        if measuring.cache is not None:
            measuring.cache.save()
        return plan

    busy = plan_now(10.0)  # the first plan, on a busy machine
    quiet = plan_now(1.0)  # measured afresh: the first check is far faster than the cache
    assert quiet["hidden"] > busy["hidden"]
    before = len(calls)
    assert all(plan_now(1.0) == quiet for _ in range(5))  # noise of 20% changes nothing
    assert len(calls) - before == 5  # one check a plan, the rest from the cache


def test_torchrun_counts_every_process():
    one = plan_for(cpu(22_000, bf16_ratio=2.3))
    four = plan_for(cpu(22_000, bf16_ratio=2.3), world=4)
    assert four.tokens_per_s == pytest.approx(4 * one.tokens_per_s, rel=0.5)
    assert size(four) > size(one)
    assert plan_for(cpu(22_000), world=3).options()["batch_size"] % 3 == 0


def test_a_step_budget_sizes_by_the_tokens_those_steps_see():
    machine = cpu(22_000, bf16_ratio=2.3)
    short = plan_for(machine, seconds=None, steps=300)
    long = plan_for(machine, seconds=None, steps=30_000)
    assert size(short) < size(long)


def test_a_shape_that_does_not_fit_in_memory_is_never_chosen():
    machine = gpu()
    measure = machine.measure
    machine.measure = lambda c: None if c.hidden >= 1536 else measure(c)
    plan = plan_for(machine, seconds=3600, train_tokens=2_000_000_000)
    assert plan.options()["hidden"] < 1536


def test_the_probe_takes_at_most_five_percent_of_the_budget_and_ten_seconds():
    assert sizing.probe_allowance(180) == pytest.approx(9)
    assert sizing.probe_allowance(3600) == 10
    assert sizing.probe_allowance(20) == pytest.approx(1)


def test_cpus_of_one_name_with_other_features_keep_apart_in_the_speed_cache(monkeypatch):
    """Two KVM guests both called "Intel(R) Xeon(R) Processor", one with AMX: the speeds
    one measured are not the other's."""
    import torch

    from charrnn.runs import probe

    monkeypatch.setattr(probe, "cpu_model", lambda: "Intel(R) Xeon(R) Processor")
    monkeypatch.setattr(probe, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    amx = probe.machine_fingerprint(torch.device("cpu"))
    monkeypatch.setattr(probe, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    no_amx = probe.machine_fingerprint(torch.device("cpu"))
    monkeypatch.setattr(probe, "cpu_flags", lambda: {"avx2"})
    avx2 = probe.machine_fingerprint(torch.device("cpu"))
    assert len({amx, no_amx, avx2}) == 3
    assert "[avx2 avx512f avx512_bf16 amx_bf16]" in amx and "[avx2]" in avx2
