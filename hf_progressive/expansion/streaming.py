"""Expand large checkpoints in bounded memory: read the source shard by shard with `safetensors.safe_open`, apply
the same per-tensor operator as `from_smaller` (`expansion.expand_tensor`), and stream every grown tensor straight
into size-bounded output shards. Shapes are known from the target config, so each shard's header is written first and
tensors are appended one at a time: resident memory is a few tensors, whatever the model size (mergekit-style)."""

import json
import os
import shutil
import struct
from contextlib import ExitStack
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from ..errors import ExpansionError
from ..utils.io import write_json
from .arguments import parse_size
from .checkpoint import (
    INDEX_FILE,
    SINGLE_FILE,
    atomic_output_dir,
    check_weights,
    copy_tokenizer_files,
    is_checkpoint_folder,
    read_config,
    weight_files,
)
from .keys import expected_keys, storage_key
from .methods import DEFAULT_WIDTH
from .operators import expand_tensor
from .plan import GrowthPlan


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def check_room(out: Path, total: int, largest: int) -> None:
    """Say the size first: refuse a growth whose weights do not fit the free disk at `out`, or whose largest tensor
    (built in memory, with its source) does not fit the available memory, before writing anything."""
    free = shutil.disk_usage(out).free
    if total > free:
        raise ExpansionError(f"the grown weights take {total / 1e9:,.1f} GB but {out} has {free / 1e9:,.1f} GB free.")
    memory = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else None
    if memory and 2 * largest > memory:
        raise ExpansionError(
            f"the largest grown tensor takes {largest / 1e9:,.1f} GB (twice that while it is built) but "
            f"{memory / 1e9:,.1f} GB of memory is available; check the target sizes."
        )


TORCH_DTYPES = {name: dtype for dtype, name in SAFETENSORS_DTYPES.items()}


class LazyCheckpoint:
    """`load(key)` for a (sharded) safetensors checkpoint: reads one tensor per call with plain file reads into a
    fresh buffer (no memory map: mapped pages of the whole source would otherwise count as resident memory)."""

    def __init__(self, src: Path, config, stack: ExitStack):
        self.entries = {}
        for file in weight_files(src):
            handle = stack.enter_context(open(file, "rb"))
            header_len = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(header_len))
            header.pop("__metadata__", None)
            for key, entry in header.items():
                self.entries[key] = (handle, 8 + header_len, entry)
        self.config = config
        self.dtype = TORCH_DTYPES[next(iter(self.entries.values()))[2]["dtype"]]

    def __call__(self, key: str) -> torch.Tensor:
        if key not in self.entries:
            key = storage_key(key, self.config)
        handle, base, entry = self.entries[key]
        begin, end = entry["data_offsets"]
        buffer = torch.empty(end - begin, dtype=torch.uint8)
        handle.seek(base + begin)
        handle.readinto(memoryview(buffer.numpy()))
        return buffer.view(TORCH_DTYPES[entry["dtype"]]).view(entry["shape"])


def _target_shapes(plan: GrowthPlan) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig.from_dict(plan.dst.to_dict()))
    shapes = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    keys = [k for k in expected_keys(plan.dst) if storage_key(k, plan.dst) == k]  # a tied alias is not stored
    return {key: shapes[key] for key in keys}


def _shard(shapes: dict[str, tuple], itemsize: int, max_bytes: int) -> list[list[str]]:
    shards, current, size = [], [], 0
    for key, shape in shapes.items():
        nbytes = itemsize * int(torch.Size(shape).numel())
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(key)
        size += nbytes
    return [*shards, current] if current else shards


def _write_shard(path: Path, keys: list[str], shapes: dict, dtype: torch.dtype, produce, progress) -> int:
    """Write one safetensors file: header (offsets from the known shapes), then each tensor as it is produced."""
    header, offset = {}, 0
    for key in keys:
        nbytes = dtype.itemsize * int(torch.Size(shapes[key]).numel())
        header[key] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": list(shapes[key]),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # align the data section
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        for key in keys:
            tensor = produce(key)
            if tuple(tensor.shape) != shapes[key] or tensor.dtype != dtype:
                raise RuntimeError(f"{key}: produced {tuple(tensor.shape)} {tensor.dtype}, expected {shapes[key]}")
            handle.write(memoryview(tensor.contiguous().view(torch.uint8).numpy()))
            progress.update(tensor.numel() * dtype.itemsize)
            del tensor
    return offset


def expand_checkpoint(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    target_config,
    method: str = DEFAULT_WIDTH,
    seed: int = 0,
    *,
    noise_std: float | None = None,
    inserted_layers: list[int] | None = None,
    max_shard_size: str | int = "5GB",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """
    Grow the checkpoint in `src_dir` into `dst_dir` without holding either model in memory. The output is
    bit-identical to `ProgressiveLlamaForCausalLM.from_smaller(src_dir, target_config, method, seed)` saved with
    `save_pretrained`, keeps the source dtype, and is written atomically (nothing at `dst_dir` if it fails).
    """
    src = Path(src_dir)
    source_config = read_config(src)
    check_weights(src, source_config)  # missing, truncated or mis-shaped weights fail before anything is written
    plan = GrowthPlan.from_configs(source_config, target_config, method, seed, noise_std, inserted_layers)
    with atomic_output_dir(dst_dir, overwrite, **output_guard(src)) as tmp:
        write_expansion(src, tmp, plan, max_shard_size, progress)
    return Path(dst_dir)


def is_expansion_folder(path: Path) -> bool:
    """Whether `path` is a grown checkpoint written by hf_progressive (growth.json beside checkpoint files only): the
    only non-empty folder an expand with overwrite replaces."""
    from .record import GROWTH_FILE

    return is_checkpoint_folder(path, GROWTH_FILE)


def output_guard(src: str | os.PathLike) -> dict:
    """What `checkpoint.atomic_output_dir` needs to guard an expansion's DST: only a grown checkpoint is replaced, and
    never a folder that is or holds the source."""
    source = [(Path(src), "the source checkpoint")] if Path(src).exists() else []
    return {"owned": is_expansion_folder, "protected": source, "kind": "grown checkpoint"}


def write_expansion(src: Path, out: Path, plan: GrowthPlan, max_shard_size: str | int = "5GB", progress=True) -> None:
    """Stream the checkpoint `plan` grows from `src` into the existing, empty folder `out` (weights in shards, config,
    generation config, tokenizer files, growth.json without a preservation report); callers make it atomic."""
    shapes = _target_shapes(plan)
    with ExitStack() as stack:
        load = LazyCheckpoint(src, plan.src, stack)
        sizes = [load.dtype.itemsize * int(torch.Size(s).numel()) for s in shapes.values()]
        check_room(out, sum(sizes), max(sizes))
        shards = _shard(shapes, load.dtype.itemsize, parse_size(max_shard_size))
        names = (
            [SINGLE_FILE]
            if len(shards) == 1
            else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        )
        total = sum(load.dtype.itemsize * int(torch.Size(s).numel()) for s in shapes.values())
        with tqdm(total=total, unit="B", unit_scale=True, desc="expanding", disable=not progress) as bar:
            for name, keys in zip(names, shards, strict=True):
                _write_shard(out / name, keys, shapes, load.dtype, lambda key: expand_tensor(key, load, plan), bar)
        if len(shards) > 1:
            weight_map = {key: name for name, keys in zip(names, shards, strict=True) for key in keys}
            write_json(out / INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})
        _write_side_files(src, out, plan, load.dtype)


def _write_side_files(src: Path, dst: Path, plan: GrowthPlan, dtype: torch.dtype) -> None:
    from .record import GROWTH_FILE, streaming_growth_record

    config = LlamaConfig.from_dict(plan.dst.to_dict())
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = dtype
    config.save_pretrained(dst)
    if (src / "generation_config.json").is_file():
        (dst / "generation_config.json").write_bytes((src / "generation_config.json").read_bytes())
    copy_tokenizer_files(src, dst)
    write_json(dst / GROWTH_FILE, streaming_growth_record(str(src), plan))


__all__ = [
    "LazyCheckpoint",
    "expand_checkpoint",
    "is_expansion_folder",
    "output_guard",
    "write_expansion",
]
