"""Consistency between family members, measured as Yano et al. 2025 do: token-level KL divergence between the
next-token distributions of two members on held-out text, in fp32 from log-softmax of both members' logits,
averaged over all target tokens; both directions, their mean, top-1 agreement, and every member's loss. Memory stays
bounded for large vocabularies: members return hidden states, and logits are formed `chunk_tokens` at a time."""

import itertools

import torch
from tqdm.auto import tqdm


@torch.no_grad()
def consistency(
    models: dict,
    blocks: torch.Tensor,
    batch_size: int = 8,
    chunk_tokens: int = 2048,
    pairs: str = "all",
    progress: bool = False,
) -> dict:
    """
    Compare every pair of `models` (name -> causal LM sharing one tokenizer; `pairs="adjacent"` for neighbours in
    the given order only) on `blocks` (`(n, seq_len)` token ids). Returns `{"members", "tokens", "loss", "pairs"}`
    where each pair holds `kl_a_b` = KL(a || b), `kl_b_a`, `kl_mean` and `top1_agreement`.
    """
    names = list(models)
    chosen = list(itertools.combinations(names, 2)) if pairs == "all" else list(zip(names, names[1:], strict=False))
    sums = {"loss": dict.fromkeys(names, 0.0), "pairs": {pair: [0.0, 0.0, 0.0] for pair in chosen}}
    tokens = 0
    for model in models.values():
        model.eval()
    for start in tqdm(range(0, len(blocks), batch_size), desc="consistency", disable=not progress):
        ids = blocks[start : start + batch_size]
        hidden = {name: _final_hidden(model, ids) for name, model in models.items()}
        targets = ids[:, 1:].reshape(-1)
        for begin in range(0, len(targets), chunk_tokens):
            end = min(begin + chunk_tokens, len(targets))
            log_probs = {name: _log_probs(models[name], hidden[name][begin:end]) for name in names}
            target = targets[begin:end].to(next(iter(log_probs.values())).device)
            for name in names:
                sums["loss"][name] -= log_probs[name].gather(1, target[:, None]).sum().item()
            for a, b in chosen:
                sums["pairs"][(a, b)][0] += _kl(log_probs[a], log_probs[b]).sum().item()
                sums["pairs"][(a, b)][1] += _kl(log_probs[b], log_probs[a]).sum().item()
                sums["pairs"][(a, b)][2] += (log_probs[a].argmax(-1) == log_probs[b].argmax(-1)).sum().item()
            tokens += end - begin
    return _summary(names, sums, tokens)


def _final_hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """Final (normed) hidden states of every position but the last, flattened: `(batch * (seq_len - 1), hidden)`."""
    device = next(model.parameters()).device
    hidden = model.model(input_ids=ids.to(device)).last_hidden_state[:, :-1]
    return hidden.reshape(-1, hidden.shape[-1])


def _log_probs(model, hidden: torch.Tensor) -> torch.Tensor:
    logits = model.lm_head(hidden).float()  # fp32 (or wider), as the paper measures
    return torch.log_softmax(logits, dim=-1).to("cpu" if hidden.device.type == "cpu" else hidden.device)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per token from log-probabilities."""
    log_q = log_q.to(log_p.device)
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp(min=0.0)


def _summary(names: list[str], sums: dict, tokens: int) -> dict:
    pairs = []
    for (a, b), (kl_ab, kl_ba, agree) in sums["pairs"].items():
        pairs.append(
            {
                "a": a,
                "b": b,
                "kl_a_b": kl_ab / tokens,
                "kl_b_a": kl_ba / tokens,
                "kl_mean": (kl_ab + kl_ba) / (2 * tokens),
                "top1_agreement": agree / tokens,
            }
        )
    return {
        "members": names,
        "tokens": tokens,
        "loss": {n: v / tokens for n, v in sums["loss"].items()},
        "pairs": pairs,
    }


def kl_matrix(result: dict, key: str = "kl_mean") -> list[list[float | None]]:
    """Square matrix over `result["members"]` (None where a pair was not measured; 0 on the diagonal). For
    directional keys, entry [i][j] is KL(member i || member j)."""
    names = result["members"]
    index = {name: i for i, name in enumerate(names)}
    matrix = [[0.0 if i == j else None for j in range(len(names))] for i in range(len(names))]
    for pair in result["pairs"]:
        i, j = index[pair["a"]], index[pair["b"]]
        if key == "kl_mean" or key == "top1_agreement":
            matrix[i][j] = matrix[j][i] = pair[key]
        else:
            matrix[i][j], matrix[j][i] = pair["kl_a_b"], pair["kl_b_a"]
    return matrix


def format_consistency(result: dict) -> str:
    """The KL matrix (mean of both directions), top-1 agreement of adjacent members, and each member's loss."""
    names = result["members"]
    width = max(12, *(len(n) + 2 for n in names))
    lines = [
        f"KL (mean of both directions) over {result['tokens']:,} tokens",
        " " * width + "".join(f"{n:>{width}}" for n in names),
    ]
    for name, row in zip(names, kl_matrix(result), strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{'-' if v is None else f'{v:.4f}':>{width}}" for v in row))
    lines.append(
        "pairs: "
        + "; ".join(
            f"{p['a']} vs {p['b']}: KL(a||b) {p['kl_a_b']:.4f}, KL(b||a) {p['kl_b_a']:.4f}, "
            f"top-1 agreement {p['top1_agreement']:.1%}"
            for p in result["pairs"]
        )
    )
    lines.append("loss: " + ", ".join(f"{n} {v:.4f}" for n, v in result["loss"].items()))
    return "\n".join(lines)


__all__ = ["consistency", "format_consistency", "kl_matrix"]
