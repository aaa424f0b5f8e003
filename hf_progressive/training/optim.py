"""`GrownAdamW`: torch's AdamW, plus one thing a grown model needs. torch keeps one step count per tensor, so the bias
correction of a tensor is shared by all its coordinates; after a growth, a tensor holds coordinates copied from the
parent (their moments are `step` steps old) next to fresh ones (no history). With the parent's step, a fresh
coordinate's first update is up to (1 - beta1) / sqrt(1 - beta2) times `lr` (3.2x at beta2 = 0.999); with a step of 0,
the copies' moments would be mis-corrected. A tensor whose state holds `fresh` (a bool mask) and `born` (the step the
growth happened at) bias-corrects its fresh coordinates by their own age, `step - born`, so each coordinate moves
exactly as a fresh AdamW (fresh) or the parent's AdamW (copies) would. Every other tensor takes torch's own update
(fused or foreach as configured). The mask is dropped once both corrections agree to float32 precision."""

import math

import torch


AGREE = 1e-8  # beta ** age below this: the two bias corrections agree to float32 precision


class GrownAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW` whose tensors may carry per-coordinate ages after a growth (see the module docstring).
    Its state dict is torch's, with `fresh` and `born` added where a growth left young coordinates."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        young = [(p, group) for group in self.param_groups for p in group["params"] if self._is_young(p)]
        for param, group in young:
            _young_step(param, self.state[param], group)
        grads = [(param, param.grad) for param, _ in young]
        for param, _ in young:  # hidden from torch's step, which updates everything else
            param.grad = None
        try:
            super().step()
        finally:
            for param, grad in grads:
                param.grad = grad
        return loss

    def _is_young(self, param) -> bool:
        return param.grad is not None and "fresh" in self.state.get(param, {})


def _young_step(param: torch.Tensor, state: dict, group: dict) -> None:
    """One AdamW update (decoupled weight decay, torch's formula) with a per-coordinate bias correction."""
    if group.get("amsgrad") or group.get("maximize"):
        raise ValueError("GrownAdamW: amsgrad and maximize are not supported for grown tensors; use plain AdamW.")
    beta1, beta2 = group["betas"]
    lr, eps, decay = float(group["lr"]), group["eps"], group["weight_decay"]
    grad, exp_avg, exp_avg_sq = param.grad, state["exp_avg"], state["exp_avg_sq"]
    state["step"] += 1
    step = int(state["step"])
    param.mul_(1 - lr * decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    age = step - state["born"]
    if state["fresh"].dtype != torch.bool:  # torch's load_state_dict casts every state tensor to the param's dtype
        state["fresh"] = state["fresh"].bool()
    fresh = state["fresh"]
    correction1 = torch.where(fresh, 1 - beta1**age, 1 - beta1**step).to(param.dtype)
    correction2 = torch.where(fresh, math.sqrt(1 - beta2**age), math.sqrt(1 - beta2**step)).to(param.dtype)
    denominator = (exp_avg_sq.sqrt() / correction2).add_(eps)
    param.addcdiv_(exp_avg / correction1, denominator, value=-lr)
    if max(beta1, beta2) ** age < AGREE:
        del state["fresh"], state["born"]


__all__ = ["GrownAdamW"]
