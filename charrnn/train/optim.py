"""The optimizer: AdamW, fused where this PyTorch has a fused kernel for the device,
and restoring its state whichever kind of AdamW wrote it."""

from __future__ import annotations

import torch

from charrnn.train.config import TrainConfig


def make_optimizer(model: torch.nn.Module, config: TrainConfig):
    """(AdamW, whether it is fused). The fused kernel updates every parameter in one
    call, and it can skip a non-finite step by itself (`found_inf`) with no host read."""
    params = list(model.parameters())
    options = {"lr": config.lr, "weight_decay": config.weight_decay}
    if all(p.is_floating_point() and p.device.type in fused_devices() for p in params):
        return torch.optim.AdamW(params, fused=True, **options), True
    return torch.optim.AdamW(params, **options), False


def fused_devices() -> list[str]:
    """Device types with a fused AdamW kernel. The constructor does not check (the
    first step would fail), so ask; torch keeps the list in a private helper."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return _get_fused_kernels_supported_devices()
    except (ImportError, AttributeError):
        return ["cuda", "cpu"]


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, fused: bool) -> None:
    """Restore the optimizer, whichever kind wrote the state: a checkpoint records
    its own `fused` flag, and the fused kernel wants float32 step counts beside
    the weights (a CPU checkpoint resumed on a GPU)."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = (True, None) if fused else (None, None)
        if fused:
            for p in group["params"]:
                if "step" in optimizer.state.get(p, {}):
                    st = optimizer.state[p]
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


def optimizer_step(optimizer, fused: bool, bad: torch.Tensor) -> None:
    """Step unless `bad` (a () bool tensor on the device) says the gradient is not finite."""
    if fused:  # fused AdamW skips its whole update, step count included, on found_inf
        optimizer.found_inf = bad.float()
        optimizer.step()
    elif not bool(bad):  # any other optimizer needs the host to decide
        optimizer.step()
