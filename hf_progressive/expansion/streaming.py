"""Expand large checkpoints in bounded memory: read the source shard by shard with `safetensors.safe_open`, apply
the same per-tensor operator as `from_smaller` (`expansion.expand_tensor`), and stream every grown tensor straight
into size-bounded output shards. Shapes are known from the target config, so each shard's header is written first and
tensors are appended one at a time: resident memory is a few tensors, whatever the model size (mergekit-style)."""

import json
import os
import shutil
import struct
from contextlib import ExitStack, closing
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import ExpansionError
from ..utils.io import write_json
from ..utils.overlap import Flusher, bounded_map
from .architectures import architecture
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
from .keys import expected_keys, expected_shape, storage_key
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
    """`load(key)` for a (sharded) safetensors checkpoint: reads one tensor per call with positional reads (`os.pread`,
    so threads can share it) into a fresh buffer the caller owns (`fresh`). No memory map: mapped pages of the whole
    source would otherwise count as resident memory."""

    fresh = True  # every call returns a new tensor: `expand_tensor` may hand it on without a copy

    def __init__(self, src: Path, config, stack: ExitStack):
        self.entries = {}
        for file in weight_files(src):
            fd = os.open(file, os.O_RDONLY)
            stack.callback(os.close, fd)
            header_len = struct.unpack("<Q", os.pread(fd, 8, 0))[0]
            header = json.loads(os.pread(fd, header_len, 8))
            header.pop("__metadata__", None)
            for key, entry in header.items():
                self.entries[key] = (fd, 8 + header_len, entry)
        self.config = config
        self.dtype = TORCH_DTYPES[next(iter(self.entries.values()))[2]["dtype"]]

    def __call__(self, key: str) -> torch.Tensor:
        if key not in self.entries:
            key = storage_key(key, self.config)
        fd, base, entry = self.entries[key]
        begin, end = entry["data_offsets"]
        buffer = torch.empty(end - begin, dtype=torch.uint8)
        view, done = memoryview(buffer.numpy()), 0
        while done < len(view):
            read = os.preadv(fd, [view[done:]], base + begin + done)
            if read == 0:
                raise ExpansionError(f"{key}: the checkpoint file ends before this tensor does (truncated shard).")
            done += read
        return buffer.view(TORCH_DTYPES[entry["dtype"]]).view(entry["shape"])


def _target_shapes(plan: GrowthPlan) -> dict[str, tuple[int, ...]]:
    """Shape of every stored tensor of the grown model, in model order (a tied alias is not stored), from the
    architecture facts alone: no model is built, so nothing heavy is imported."""
    stored = [key for key in expected_keys(plan.dst) if storage_key(key, plan.dst) == key]
    return {key: expected_shape(key, plan.dst) for key in stored}


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


def _header(keys: list[str], shapes: dict, dtype: torch.dtype) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """A safetensors header for `keys` (offsets from the known shapes, data section aligned to 8 bytes) and each key's
    `(byte offset in the file, byte count)`."""
    header, places, offset = {}, {}, 0
    for key in keys:
        nbytes = dtype.itemsize * int(torch.Size(shapes[key]).numel())
        header[key] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": list(shapes[key]),
            "data_offsets": [offset, offset + nbytes],
        }
        places[key], offset = (offset, nbytes), offset + nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    blob = struct.pack("<Q", len(blob)) + blob
    return blob, {key: (len(blob) + begin, nbytes) for key, (begin, nbytes) in places.items()}


def write_safetensors(files: dict[Path, list[str]], shapes: dict, dtype: torch.dtype, produce, progress=None) -> None:
    """Write safetensors `files` ({path: keys}) whose tensors `produce(key)` makes, in any order. Every header is
    written first (the shapes are known), then two threads each produce a tensor and write it at its place, so
    reading, computing and writing overlap on both cores; at most three tensors are held at once. Files are flushed
    to disk in the background as they fill."""
    places = {}
    with ExitStack() as stack:
        for path, keys in files.items():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            stack.callback(os.close, fd)
            blob, offsets = _header(keys, shapes, dtype)
            _write_at(fd, memoryview(blob), 0)
            places.update({key: (path, fd, *offsets[key]) for key in keys})

        def write(key: str) -> tuple[Path, int]:
            tensor, (path, fd, offset, nbytes) = produce(key), places[key]
            if tuple(tensor.shape) != tuple(shapes[key]) or tensor.dtype != dtype:
                raise RuntimeError(f"{key}: produced {tuple(tensor.shape)} {tensor.dtype}, expected {shapes[key]}")
            _write_at(fd, memoryview(tensor.contiguous().view(torch.uint8).numpy()), offset)
            return path, nbytes

        flusher = stack.enter_context(Flusher())
        for path, nbytes in stack.enter_context(closing(bounded_map(write, list(places), workers=2, ahead=1))):
            flusher.maybe(path, nbytes)
            if progress is not None:
                progress.update(nbytes)
        flusher.wait()


def _write_at(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


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
    bit-identical to `Progressive{Arch}ForCausalLM.from_smaller(src_dir, target_config, method, seed)` saved with
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
        total = sum(sizes)
        with tqdm(total=total, unit="B", unit_scale=True, desc="expanding", disable=not progress) as bar:
            files = {out / name: keys for name, keys in zip(names, shards, strict=True)}
            write_safetensors(files, shapes, load.dtype, lambda key: expand_tensor(key, load, plan), bar)
        if len(shards) > 1:
            weight_map = {key: name for name, keys in zip(names, shards, strict=True) for key in keys}
            write_json(out / INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})
        _write_side_files(src, out, plan, load.dtype)


def _write_side_files(src: Path, dst: Path, plan: GrowthPlan, dtype: torch.dtype) -> None:
    from .record import GROWTH_FILE, streaming_growth_record

    arch = architecture(plan.dst)
    config = arch.config_class().from_dict(plan.dst.to_dict())  # vanilla: the architecture's own config class
    config.architectures = [arch.causal_lm]
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
    "write_safetensors",
]
