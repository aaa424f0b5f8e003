"""Verification of a grown checkpoint against its source with one layer in memory at a time: both checkpoints run
the probe batch layer by layer, each layer's weights read from the safetensors shards just before it runs, so the
peak is a layer plus the embedding tables, not two whole models. The report is `verification.verify_expansion`'s."""

import copy
from contextlib import ExitStack
from pathlib import Path

import torch

from .architectures import architecture
from .checkpoint import read_config
from .keys import layer_key
from .streaming import LazyCheckpoint
from .verification import dtype_name, probe_ids, report_from_logits


@torch.no_grad()
def stream_logits(folder: str | Path, config, ids: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The logits of checkpoint `folder` (a model of `config`) on `ids`, computed layer by layer from its shards, in
    the checkpoint's own dtype or in `dtype`, with the architecture's own transformers classes."""
    config = copy.deepcopy(config)
    decoder, rms_norm, rotary_embedding = architecture(config).classes("DecoderLayer", "RMSNorm", "RotaryEmbedding")
    config._attn_implementation = "sdpa"  # no mask tensor: causal attention from the kernel, as the model runs it
    with ExitStack() as stack:
        load = LazyCheckpoint(Path(folder), config, stack)
        cast = (lambda tensor: tensor.to(dtype)) if dtype else (lambda tensor: tensor)
        hidden = torch.nn.functional.embedding(ids, cast(load("model.embed_tokens.weight")))
        position_ids = torch.arange(ids.shape[1])[None]
        rotary = rotary_embedding(config)
        positions = rotary(hidden, position_ids)
        for index in range(config.num_hidden_layers):
            hidden = _layer(decoder, config, index, load, cast)(
                hidden, position_ids=position_ids, position_embeddings=positions
            )
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        norm = rms_norm(config.hidden_size, eps=config.rms_norm_eps)
        norm.weight = torch.nn.Parameter(cast(load("model.norm.weight")))
        return norm(hidden) @ cast(load("lm_head.weight")).T


def _layer(decoder, config, index: int, load, cast) -> torch.nn.Module:
    """Decoder layer `index` (class `decoder`), built on the meta device and given its weights from `load` (nothing
    else in memory)."""
    with torch.device("meta"):
        layer = decoder(config, index)
    state = {name: cast(load(layer_key(index, name))) for name in layer.state_dict()}
    layer.load_state_dict(state, assign=True)
    return layer.eval()


@torch.no_grad()
def verify_checkpoints(src_dir: str | Path, dst_dir: str | Path, input_ids: torch.Tensor | None = None) -> dict:
    """`verify_expansion`'s report for checkpoint `dst_dir` grown from `src_dir`, one layer in memory at a time."""
    small, big = read_config(src_dir), read_config(dst_dir)
    ids = probe_ids(small) if input_ids is None else input_ids
    logits_small, logits_big = stream_logits(src_dir, small, ids), stream_logits(dst_dir, big, ids)
    exact = logits_small.dtype in (torch.float32, torch.float64)
    noise = 0.0 if exact else (stream_logits(src_dir, small, ids, torch.float32) - logits_small.float()).abs().max()
    return report_from_logits(logits_small, logits_big, ids, float(noise), dtype_name(logits_small.dtype))


__all__ = ["stream_logits", "verify_checkpoints"]
