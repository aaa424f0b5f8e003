"""How close a grown model is to the model it grew from: logit differences and token-level KL on a probe batch.
`from_smaller` records this report in growth.json and, with `strict=True`, enforces it."""

import copy

import torch

from ..errors import ExpansionError


# floor of the bound on max |delta logits| for a function-preserving growth, by the dtype the models run in; in low
# precision the bound also grows with the rounding measured on the probe (`dtype_noise`), see `preservation_bound`
TOLERANCES = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 2e-3}
# a grown model rounds in more places than its source (wider sums, more layers): allow this many times the
# source's own rounding; a broken growth moves logits by O(1), far above it
NOISE_FACTOR = 4.0
EXACT = (torch.float32, torch.float64)


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
    both models' next-token `loss_small` / `loss_big` on the same ids, and `dtype_noise` (see `dtype_noise`).
    """
    if input_ids is None:
        input_ids = probe_ids(small.config)
    ids = input_ids.to(small.device)
    out_small, out_big = small(ids, labels=ids), big(ids.to(big.device), labels=ids.to(big.device))
    noise = dtype_noise(small, ids, out_small.logits)
    report = report_from_logits(out_small.logits, out_big.logits, input_ids, noise, dtype_name(out_small.logits.dtype))
    return {**report, "loss_small": out_small.loss.item(), "loss_big": out_big.loss.item()}


def report_from_logits(small: torch.Tensor, big: torch.Tensor, ids: torch.Tensor, noise: float, dtype: str) -> dict:
    """The preservation report from both models' logits on `ids`: logit differences, KL(small || big) from
    log-softmax in at least fp32, next-token losses, the dtype and its own rounding (`dtype_noise`)."""
    kind = torch.promote_types(small.dtype, torch.float32)
    a, b = small.to(kind), big.to(device=small.device, dtype=kind)
    diff = (a - b).abs()
    log_p, log_q = torch.log_softmax(a, dim=-1), torch.log_softmax(b, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    return {
        "max_abs_logit_diff": diff.max().item(),
        "mean_abs_logit_diff": diff.mean().item(),
        "kl": max(kl.item(), 0.0),
        "loss_small": _next_token_loss(a, ids),
        "loss_big": _next_token_loss(b, ids),
        "dtype": dtype,
        "dtype_noise": noise,
        "probe_shape": list(ids.shape),
    }


def _next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """Mean cross-entropy of each position's logits against the next id (what a causal LM's `labels=ids` gives)."""
    flat = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    return torch.nn.functional.cross_entropy(flat, ids[:, 1:].reshape(-1).to(logits.device)).item()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@torch.no_grad()
def dtype_noise(model, ids: torch.Tensor, logits: torch.Tensor | None = None) -> float:
    """max |logits of `model` in its own dtype - logits of a float32 copy| on `ids`: how far this dtype's rounding
    alone moves the logits (0 for float32 and float64, the references)."""
    if model.dtype in EXACT:
        return 0.0
    logits = model(ids).logits if logits is None else logits
    reference = copy.deepcopy(model).float()
    return (reference(ids).logits - logits.float()).abs().max().item()


def preservation_bound(report: dict, dtype: torch.dtype) -> float:
    """`TOLERANCES[dtype]` plus `NOISE_FACTOR` times the rounding the dtype causes on the probe."""
    return TOLERANCES.get(dtype, 1e-4) + NOISE_FACTOR * report.get("dtype_noise", 0.0)


def check_preservation(report: dict, dtype: torch.dtype, tolerance: float | None = None) -> None:
    """Raise `ExpansionError` if a growth that should preserve the function moved the logits by more than
    `tolerance` (default: `preservation_bound(report, dtype)`)."""
    bound = preservation_bound(report, dtype) if tolerance is None else tolerance
    if report["max_abs_logit_diff"] > bound:
        raise ExpansionError(
            f"strict: max |delta logits| = {report['max_abs_logit_diff']:.3g} exceeds the tolerance {bound:.3g} for "
            f"{dtype} (its own rounding on the probe: {report.get('dtype_noise', 0.0):.3g}); the growth did not "
            "preserve the function. Pass strict=False to keep it anyway."
        )


__all__ = [
    "NOISE_FACTOR",
    "TOLERANCES",
    "check_preservation",
    "dtype_name",
    "dtype_noise",
    "preservation_bound",
    "probe_ids",
    "report_from_logits",
    "verify_expansion",
]
