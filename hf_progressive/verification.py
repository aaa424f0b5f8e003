"""How close a grown model is to the model it grew from: logit differences and token-level KL on a probe batch.
`from_smaller` records this report in growth.json and, with `strict=True`, enforces it."""

import torch

from .errors import ExpansionError


# default bound on max |delta logits| for a function-preserving growth, by the dtype the models run in
TOLERANCES = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 1e-1, torch.float16: 2e-2}


def probe_ids(config, seed: int = 0, batch: int = 2, length: int = 16) -> torch.Tensor:
    """A fixed random batch of token ids (the same for the same config and seed)."""
    generator = torch.Generator().manual_seed(seed)
    length = min(length, config.max_position_embeddings)
    return torch.randint(0, config.vocab_size, (batch, length), generator=generator)


@torch.no_grad()
def verify_expansion(small, big, input_ids: torch.Tensor | None = None) -> dict[str, float]:
    """
    Compare `big` with `small` on `input_ids` (default: `probe_ids(small.config)`). Returns `max_abs_logit_diff`,
    `mean_abs_logit_diff`, `kl` (mean over tokens of KL(small || big), computed from log-softmax in at least fp32),
    and both models' next-token `loss_small` / `loss_big` on the same ids.
    """
    if input_ids is None:
        input_ids = probe_ids(small.config)
    ids = input_ids.to(small.device)
    out_small, out_big = small(ids, labels=ids), big(ids.to(big.device), labels=ids.to(big.device))
    dtype = torch.promote_types(out_small.logits.dtype, torch.float32)
    a = out_small.logits.to(dtype)
    b = out_big.logits.to(device=a.device, dtype=dtype)
    diff = (a - b).abs()
    log_p, log_q = torch.log_softmax(a, dim=-1), torch.log_softmax(b, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    return {
        "max_abs_logit_diff": diff.max().item(),
        "mean_abs_logit_diff": diff.mean().item(),
        "kl": max(kl.item(), 0.0),
        "loss_small": out_small.loss.item(),
        "loss_big": out_big.loss.item(),
        "dtype": str(out_small.logits.dtype).removeprefix("torch."),
        "probe_shape": list(input_ids.shape),
    }


def check_preservation(report: dict, dtype: torch.dtype, tolerance: float | None = None) -> None:
    """Raise `ExpansionError` if a growth that should preserve the function moved the logits by more than
    `tolerance` (default: `TOLERANCES[dtype]`)."""
    bound = TOLERANCES.get(dtype, 1e-4) if tolerance is None else tolerance
    if report["max_abs_logit_diff"] > bound:
        raise ExpansionError(
            f"strict: max |delta logits| = {report['max_abs_logit_diff']:.3g} exceeds the tolerance {bound:g} for "
            f"{dtype}; the growth did not preserve the function. Pass strict=False to keep it anyway."
        )


__all__ = ["TOLERANCES", "check_preservation", "probe_ids", "verify_expansion"]
