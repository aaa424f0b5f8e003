"""The demo behind `make demo` / `hf-progressive demo`: save a tiny random Llama (every weight perturbed, so nothing
passes by accident), grow it through the real `expand` path with every operator, and tabulate the preservation."""

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils.logging import disable_progress_bar

from ..expansion.arguments import GrowArguments
from ..expansion.grow import format_growth, grow_checkpoint
from ..utils.guard import check_replaceable, only_entries


TINY = dict(
    vocab_size=99,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
TARGET = dict(hidden_size=64, intermediate_size=80, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4)
HYPERCLONING_TARGET = dict(TARGET, intermediate_size=74)  # integer ratios only
METHODS = (
    "function_preserving+identity",
    "fpi+identity",
    "hypercloning+identity",
    "aki+interpolate",
    "function_preserving+stack",
)


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A tiny Llama whose every parameter (norm gains included) is random."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY, **overrides}))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def run_demo(out: Path) -> str:
    """Grow `out/small` into `out/<method>` with every operator; returns the report (details, then one table)."""
    disable_progress_bar()  # tiny models: the bars would only drown the report
    folders = ("small", *(method.replace("+", "-") for method in METHODS))
    check_replaceable(out, owned=lambda p: only_entries(p, folders.__contains__), what="--out", kind="demo folder")
    small_dir = out / "small"
    tiny_llama().save_pretrained(small_dir)
    details, rows = [], [f"{'method':<30}{'preserving':>11}{'max|dlogit|':>13}{'KL':>11}{'params':>10}"]
    for method in METHODS:
        sizes = HYPERCLONING_TARGET if method.startswith("hypercloning") else TARGET
        args = GrowArguments(method=method, overwrite=True, **sizes)
        growth = grow_checkpoint(str(small_dir), str(out / method.replace("+", "-")), args, progress=False)
        report, plan = growth["preservation"], growth["plan"]
        details.append(format_growth(growth))
        rows.append(
            f"{method:<30}{'yes' if plan['function_preserving'] else 'no':>11}"
            f"{report['max_abs_logit_diff']:>13.2e}{report['kl']:>11.2e}{growth['num_parameters']['grown']:>10,}"
        )
    return "\n\n".join(details + ["\n".join(rows)])


__all__ = ["run_demo", "tiny_llama"]
