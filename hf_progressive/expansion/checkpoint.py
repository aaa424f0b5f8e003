"""Reading and writing checkpoint directories: validate a source (a supported config, complete safetensors), load
its state dict, build a model from a state dict without a random init, and write outputs atomically (temp dir +
rename, so a failure never leaves a half-written DST)."""

import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig
from transformers.utils import logging

from ..errors import CheckpointError
from ..utils.guard import check_replaceable, only_entries
from ..utils.io import fsync
from .architectures import ARCHITECTURES, architecture, architecture_error
from .keys import IGNORED_TENSORS, TOKENIZER_FILES, expected_keys, expected_shape, tied_keys


SINGLE_FILE, INDEX_FILE = "model.safetensors", "model.safetensors.index.json"
logger = logging.get_logger(__name__)


def resolve_source(src: str | os.PathLike) -> Path:
    """A local checkpoint directory for `src`: the directory itself, or a Hub snapshot where the network allows."""
    path = Path(src)
    if path.is_dir():
        return path
    if path.exists() or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", str(src)):
        raise CheckpointError(f"{src}: no such checkpoint directory.")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(src), allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.txt"]))
    except Exception as error:  # offline, unknown repo, gated, ...: one clear line for the CLI
        raise CheckpointError(
            f"{src}: not a local directory and not fetchable from the Hub ({type(error).__name__})"
        ) from None


def read_config(path: str | os.PathLike):
    """The config of checkpoint directory `path`; `CheckpointError` if it is missing or of an architecture
    hf_progressive does not grow (`architectures.ARCHITECTURES`)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: no config.json; expected a local Hugging Face checkpoint directory.")
    try:
        raw = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path / 'config.json'}: not valid JSON ({error}).") from None
    model_type = raw.get("model_type")
    if "auto_map" in raw:  # never run a checkpoint's own code (trust_remote_code is never set)
        raise CheckpointError(
            f"{path}: config.json asks for remote code (auto_map); hf_progressive only reads "
            f"vanilla checkpoints of {', '.join(ARCHITECTURES)}. Remove auto_map if the weights are plain ones."
        )
    if model_type not in ARCHITECTURES:
        raise CheckpointError(f"{path}: {architecture_error(model_type)}")
    return AutoConfig.from_pretrained(path)


def weight_files(path: str | os.PathLike) -> list[Path]:
    """The safetensors files of a checkpoint (one file, or the shards its index names), each checked complete."""
    return list(weight_headers(path))


def weight_headers(path: str | os.PathLike) -> dict[Path, dict]:
    """`{file: header}` for the safetensors files of a checkpoint, each checked complete (`check_safetensors`)."""
    path = Path(path)
    if (path / INDEX_FILE).is_file():
        shards = sorted(set(json.loads((path / INDEX_FILE).read_text())["weight_map"].values()))
        files = [path / shard for shard in shards]
    else:
        files = [path / SINGLE_FILE]
    return {file: check_safetensors(file) for file in files}


def check_safetensors(file: Path) -> dict:
    """Raise `CheckpointError` unless `file` exists and holds every byte its header promises; returns the header
    (`{name: {"dtype", "shape", "data_offsets"}}`)."""
    if not file.is_file():
        hint = (
            " (only safetensors checkpoints are read; re-save with save_pretrained)"
            if file.name == SINGLE_FILE
            else ""
        )
        raise CheckpointError(f"{file}: missing{hint}.")
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        header_len = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        try:
            header = json.loads(handle.read(header_len)) if header_len and header_len < size else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a readable safetensors file (truncated or corrupt header).")
    header.pop("__metadata__", None)
    try:
        end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    except (TypeError, KeyError, IndexError):
        raise CheckpointError(f"{file}: not a readable safetensors file (corrupt header).") from None
    if 8 + header_len + end > size:
        raise CheckpointError(f"{file}: truncated ({size} bytes on disk, header promises {8 + header_len + end}).")
    return header


def check_weights(path: str | os.PathLike, config=None) -> list[Path]:
    """Refuse, in one line, weights that do not fit the checkpoint's own config (read from the headers alone, before
    any tensor is loaded): a missing tensor, one the model does not have (legacy rotary buffers excepted: they are
    dropped on load), or a shape the config does not give (e.g. q_proj built for another head_dim, or another
    member's weights copied in). Returns the weight files, each header read once."""
    path = Path(path)
    config = config or read_config(path)
    headers = weight_headers(path)
    shapes = {name: tuple(entry["shape"]) for header in headers.values() for name, entry in header.items()}
    expected = {key: expected_shape(key, config) for key in expected_keys(config)}
    missing = [key for key in expected if key not in shapes and key not in tied_keys(config)]
    extra = [key for key in shapes if key not in expected and not key.endswith(IGNORED_TENSORS)]
    wrong = [key for key in expected if key in shapes and shapes[key] != expected[key]]
    fix = "the weights do not match config.json; re-save the checkpoint with save_pretrained"
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} tensors missing ({missing[0]}, ...); {fix}.")
    if extra:
        raise CheckpointError(
            f"{path}: {len(extra)} tensors a {architecture(config).prefix} of this config does not have "
            f"({extra[0]}); {fix}."
        )
    if wrong:
        key = wrong[0]
        raise CheckpointError(
            f"{path}: {key} has shape {list(shapes[key])} but config.json gives {list(expected[key])} "
            f"({len(wrong)} tensors differ); {fix}."
        )
    return list(headers)


def load_state_dict(path: str | os.PathLike, config=None) -> dict[str, torch.Tensor]:
    """Every tensor of checkpoint `path`, validated first (`check_weights`); tied keys are filled in from the tensor
    they share, legacy rotary buffers are dropped."""
    config = config or read_config(path)
    state_dict: dict[str, torch.Tensor] = {}
    for file in check_weights(path, config):
        state_dict.update(load_file(file))
    for key in [key for key in state_dict if key.endswith(IGNORED_TENSORS)]:
        del state_dict[key]
    for key, owner in tied_keys(config).items():
        state_dict.setdefault(key, state_dict[owner])
    return state_dict


def model_from_state_dict(cls, config, state_dict: dict[str, torch.Tensor]):
    """`cls(config)` holding exactly `state_dict` (strict), built on the meta device: nothing initialised twice."""
    with torch.device("meta"):
        model = cls(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.tie_weights()
    reference = next(iter(state_dict.values()))
    rotary = model.model.rotary_emb  # non-persistent buffers are not in the state dict: rebuild them for real
    model.model.rotary_emb = type(rotary)(config=model.config).to(reference.device)
    model.config.dtype = reference.dtype
    leftovers = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise CheckpointError(f"tensors left uninitialised after loading: {leftovers[:3]}")
    return model.eval()


def load_model(path: str | os.PathLike, cls=None):
    """A checkpoint directory as its architecture's causal LM (`cls` by default), with clear errors for anything that
    is not a complete checkpoint of a supported architecture."""
    config = read_config(path)
    cls = cls or architecture(config).classes("ForCausalLM")[0]  # the modeling code: imported where a model is built
    model = model_from_state_dict(cls, config, load_state_dict(path, config))
    model.name_or_path = str(path)
    return model


def prepare_output_dir(dst: str | os.PathLike, overwrite: bool, owned=None, what: str = "DST", **guard) -> Path:
    """Refuse (before any work is done) a `dst` that `guard.check_replaceable` refuses (the root, home, CWD, a folder
    of other files), or a non-empty one of our own output unless `overwrite`. `owned(folder)` says whether a folder is
    this command's own output (the only kind `overwrite` replaces); `guard` passes `protected` and `kind` on."""
    dst = Path(dst)
    check_replaceable(dst, owned=owned, what=what, **guard)
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise CheckpointError(f"{dst}: exists and is not empty; pass --overwrite (overwrite=True) to replace it.")
    return dst


@contextmanager
def atomic_output_dir(dst: str | os.PathLike, overwrite: bool = False, owned=None, **guard) -> Iterator[Path]:
    """Yield a temp dir beside `dst`; on success its files are flushed to disk (fsync) and it replaces `dst` in one
    rename, so a crash at any point leaves the old `dst` or the complete new one; on failure it is removed. `dst`
    must pass `prepare_output_dir` (with `owned` and `guard`), checked here and again right before the replacement."""
    dst = prepare_output_dir(dst, overwrite, owned, **guard)
    check_writable(dst)
    missing = [p for p in [dst.parent, *dst.parent.parents] if not p.exists()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(dst)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-{os.getpid()}-", dir=dst.parent))
    done = False
    try:
        yield tmp
        publish_dir(tmp, dst, owned, **guard)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in [] if done else missing:  # leave no trace: the folders this call created
            if parent.exists() and not any(parent.iterdir()):
                parent.rmdir()


def _remove_orphans(dst: Path) -> None:
    """Remove temp dirs beside `dst` left by a killed writer (their pid is gone; unnamed ones predate pids)."""
    for tmp in dst.parent.glob(f".{dst.name}.tmp-*"):
        pid = tmp.name.removeprefix(f".{dst.name}.tmp-").split("-")[0]
        if not (pid.isdigit() and _alive(int(pid))):
            logger.warning(f"{tmp}: left by an interrupted write; removing it")
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def publish_dir(tmp: Path, dst: Path, owned=None, **guard) -> None:
    """Flush every file of the finished folder `tmp` to disk, then put it in place of `dst` in one rename (and flush
    the parent's entries): readers see the old `dst` or the complete new one. An existing `dst` is removed only if it
    is empty or `owned` recognises it (`guard.check_replaceable`, asked again here, right before the removal)."""
    for file in tmp.rglob("*"):
        if file.is_file():
            fsync(file)
    if dst.exists():
        check_replaceable(dst, owned=owned, **{"what": "output", **guard})
        shutil.rmtree(dst)
    tmp.rename(dst)
    fsync(dst.parent)


def is_checkpoint_folder(path: Path, marker: str) -> bool:
    """Whether folder `path` holds a checkpoint this library wrote (its `marker` file, e.g. growth.json) and nothing
    else: config, weights (one file or shards and their index), generation config, tokenizer files."""
    names = {"config.json", "generation_config.json", SINGLE_FILE, INDEX_FILE, marker, *TOKENIZER_FILES}
    shard = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
    return (path / marker).is_file() and only_entries(path, lambda n: n in names or bool(shard.fullmatch(n)))


def check_writable(path: str | os.PathLike) -> None:
    """Refuse early (before any work) a `path` that cannot be created: its nearest existing ancestor must be a
    directory this process can write to. Probed with a real temp file, so read-only mounts count (even for root)."""
    path = Path(path).absolute()
    ancestor = next(p for p in [path, *path.parents] if p.exists())
    if not ancestor.is_dir():
        raise CheckpointError(f"{path}: {ancestor} is a file, not a directory; choose an output path in a folder.")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise CheckpointError(
            f"{path}: cannot write in {ancestor} ({error.strerror}); choose a writable output directory."
        ) from None


def folder_hash(folder: Path) -> str:
    """sha256 over every file of `folder` (relative path and content, in sorted order): equal folders, equal hash."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def complete_checkpoint(path: Path) -> bool:
    """Whether a Trainer checkpoint folder was written to the end: the Trainer writes trainer_state.json last, so a
    kill mid-save leaves it missing or unparsable; the weights must also hold every byte their header promises."""
    try:
        json.loads((path / "trainer_state.json").read_text())
        adapter = path / "adapter_model.safetensors"  # a PEFT stage saves adapters, not the whole model
        check_safetensors(adapter) if adapter.exists() else weight_files(path)
    except (OSError, ValueError):  # missing file, half-written JSON, truncated weights (CheckpointError)
        return False
    return True


def last_complete_checkpoint(stage_dir: Path, remove_others: bool = True) -> str | None:
    """The newest Trainer checkpoint in `stage_dir` that was written to the end (None: start the stage over); newer,
    half-written ones (a kill mid-save) are removed when `remove_others`, so the Trainer never resumes from them."""
    checkpoints = sorted(stage_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for checkpoint in checkpoints:
        if complete_checkpoint(checkpoint):
            return str(checkpoint)
        if remove_others:
            logger.warning(f"{checkpoint}: half-written (interrupted save); removing it")
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the tokenizer files `src` has into `dst`; returns their names."""
    copied = [name for name in TOKENIZER_FILES if (Path(src) / name).is_file()]
    for name in copied:
        shutil.copy2(Path(src) / name, Path(dst) / name)
    return copied


__all__ = [
    "atomic_output_dir",
    "check_safetensors",
    "check_weights",
    "check_writable",
    "complete_checkpoint",
    "copy_tokenizer_files",
    "folder_hash",
    "is_checkpoint_folder",
    "last_complete_checkpoint",
    "load_model",
    "load_state_dict",
    "model_from_state_dict",
    "prepare_output_dir",
    "publish_dir",
    "read_config",
    "resolve_source",
    "weight_files",
    "weight_headers",
]
