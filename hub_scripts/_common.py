"""Shared pieces of the publishing scripts: the smoke test, staging a member's upload folder, and an idempotent
one-commit push (a rerun skips repos whose content is already there, by a content hash in the commit message).
The token comes from huggingface_hub's usual login / HF_TOKEN; nothing here prints, logs or writes it."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch
from huggingface_hub import HfApi
from transformers import AutoModelForCausalLM

from hf_progressive.cards import family_card, member_card


MEMBER_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "growth.json",
    "training_log.json",
    "eval_results.json",
)
MARK = "hf_progressive content "


def is_family(out: Path) -> bool:
    """True for a directory written by build-family; otherwise says so on stderr (the scripts then exit 2)."""
    if (out / "family.json").is_file():
        return True
    print(f"{out}: no family.json; pass a directory written by hf-progressive build-family", file=sys.stderr)
    return False


def smoke_test(member_dir: Path) -> None:
    """Load like any user would, run one forward pass: no NaN, logits of the right shape, vanilla Llama."""
    model = AutoModelForCausalLM.from_pretrained(member_dir)
    if model.config.architectures != ["LlamaForCausalLM"]:
        raise SystemExit(f"{member_dir}: architectures {model.config.architectures}, expected LlamaForCausalLM")
    ids = torch.arange(min(8, model.config.vocab_size))[None]
    with torch.no_grad():
        logits = model(ids).logits
    if logits.shape != (1, ids.shape[1], model.config.vocab_size) or not torch.isfinite(logits).all():
        raise SystemExit(
            f"{member_dir}: smoke test failed (logits {tuple(logits.shape)}, finite: "
            f"{bool(torch.isfinite(logits).all())})"
        )


def stage_member(out: Path, name: str, ids: dict[str, str], folder: Path, files=MEMBER_FILES) -> Path:
    """Write exactly what member `name`'s repo will hold into `folder` (card as README.md, consistency subset)."""
    source = out / "members" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        if (source / file).is_file():
            shutil.copy2(source / file, folder / file)
    member_card(out, name, ids).save(folder / "README.md")
    if (out / "consistency.json").is_file():
        result = json.loads((out / "consistency.json").read_text())
        pairs = [p for p in result["pairs"] if name in (p["a"], p["b"])]
        (folder / "consistency.json").write_text(json.dumps({**result, "pairs": pairs}, indent=2) + "\n")
    return folder


def stage_family(out: Path, ids: dict[str, str], folder: Path) -> Path:
    """The family repo: its card and the report's plots."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = [p.name for p in sorted(out.glob("*.png"))]
    for plot in plots:
        shutil.copy2(out / plot, folder / plot)
    for file in ("family.json", "consistency.json", "eval_results.json", "report.md"):
        if (out / file).is_file():
            shutil.copy2(out / file, folder / file)
    family_card(out, ids, plots).save(folder / "README.md")
    return folder


def content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def push_folder(api: HfApi, repo_id: str, folder: Path, private: bool, revision: str | None, message: str) -> str:
    """Create the repo if needed and upload `folder` in one commit, unless that exact content is already there.
    Returns "created", "updated" or "unchanged"."""
    mark = MARK + content_hash(folder)
    api.create_repo(repo_id, private=private, exist_ok=True)
    try:
        commits = api.list_repo_commits(repo_id, revision=revision)
    except Exception:  # a revision (branch) that does not exist yet
        commits = []
    if any(mark in (commit.message or "") or mark in commit.title for commit in commits):
        return "unchanged"
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=folder, revision=revision, commit_message=message, commit_description=mark
    )
    return "updated" if len(commits) > 1 else "created"
