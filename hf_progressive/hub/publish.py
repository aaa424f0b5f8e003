"""Publishing a built family to the Hub: smoke-test every member, stage exactly what each repo will hold (the member's
files, its card, its consistency rows), push each repo in one commit, and list the members in a Collection. Reruns are
idempotent: every upload carries a content hash in its commit description, so content already there is skipped. The
token comes from huggingface_hub's usual login / HF_TOKEN; nothing here prints, logs or writes it.

`push_family` and `push_metrics` yield one line per action; `hf-progressive push` / `push-metrics` print them."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..expansion.checkpoint import folder_hash
from ..expansion.record import GROWTH_FILE
from ..family.ledger import EVAL_FILE, TRAINING_LOG_FILE, FamilyPaths, read_family
from .cards import family_card, family_repo_id, member_card, repo_ids


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
    GROWTH_FILE,
    TRAINING_LOG_FILE,
    EVAL_FILE,
)
METRIC_FILES = (EVAL_FILE,)  # plus README.md and consistency.json, written by stage_member
MARK = "hf_progressive content "


def smoke_test(member_dir: Path) -> None:
    """Load like any user would, run one forward pass: no NaN, logits of the right shape, a vanilla checkpoint of its
    own architecture (e.g. `Qwen3ForCausalLM` for `model_type: qwen3`)."""
    from transformers import AutoModelForCausalLM

    from ..expansion.architectures import architecture

    model = AutoModelForCausalLM.from_pretrained(member_dir)
    expected = architecture(model.config).causal_lm
    if model.config.architectures != [expected] or type(model).__name__ != expected:
        raise CheckpointError(f"{member_dir}: architectures {model.config.architectures}, expected {expected}.")
    ids = torch.arange(min(8, model.config.vocab_size))[None]
    with torch.no_grad():
        logits = model(ids).logits
    if logits.shape != (1, ids.shape[1], model.config.vocab_size) or not torch.isfinite(logits).all():
        raise CheckpointError(
            f"{member_dir}: smoke test failed (logits {tuple(logits.shape)}, finite: "
            f"{bool(torch.isfinite(logits).all())}); rebuild this member."
        )


def stage_member(out: Path, name: str, ids: dict[str, str], folder: Path, files=MEMBER_FILES) -> Path:
    """Write exactly what member `name`'s repo will hold into `folder` (card as README.md, consistency subset)."""
    paths = FamilyPaths(out)
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        if (paths.member(name) / file).is_file():
            shutil.copy2(paths.member(name) / file, folder / file)
    member_card(out, name, ids).save(folder / "README.md")
    if paths.consistency.is_file():
        result = json.loads(paths.consistency.read_text())
        pairs = [p for p in result["pairs"] if name in (p["a"], p["b"])]
        (folder / paths.consistency.name).write_text(json.dumps({**result, "pairs": pairs}, indent=2) + "\n")
    return folder


def stage_family(out: Path, ids: dict[str, str], folder: Path) -> Path:
    """The family repo: its card, the ledger, the derived results and the report's plots."""
    paths = FamilyPaths(out)
    folder.mkdir(parents=True, exist_ok=True)
    plots = paths.plots()
    for file in [*plots, paths.ledger, paths.consistency, paths.eval_results, paths.report]:
        if file.is_file():
            shutil.copy2(file, folder / file.name)
    family_card(out, ids, [p.name for p in plots]).save(folder / "README.md")
    return folder


def require_token() -> None:
    """Fail fast, in one line, when no Hub token is configured (rather than after the network refuses)."""
    from huggingface_hub import get_token

    if not get_token():
        raise CheckpointError(
            "no Hugging Face token: run `hf auth login` or set HF_TOKEN (or pass --dry-run to stage without pushing)."
        )


def push_folder(api, repo_id: str, folder: Path, private: bool, revision: str | None, message: str) -> str:
    """Create the repo if needed and upload `folder` in one commit, unless that exact content is already there.
    Returns "created", "updated" or "unchanged"."""
    mark = MARK + folder_hash(folder)[:16]
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


def push_family(
    out: str | Path,
    namespace: str,
    prefix: str | None = None,
    *,
    private: bool = False,
    dry_run: bool = False,
    revision: str | None = None,
    endpoint: str | None = None,
    allow_incomplete: bool = False,
) -> Iterator[str]:
    """Smoke-test, stage and push every member, the family repo and the Collection; yields what it does. A family
    with members still to build is refused unless `allow_incomplete`; without a token it fails before any work."""
    paths, ledger = FamilyPaths(out), read_family(out)
    prefix = prefix or ledger.recipe
    ids = repo_ids(paths.root, namespace, prefix)
    if len(ledger.members) < ledger.members_planned and not allow_incomplete:
        raise CheckpointError(
            f"{out}: {len(ledger.members)} of {ledger.members_planned} members are built; finish build-family "
            "first, or pass --allow-incomplete to publish these."
        )
    if not dry_run:
        require_token()
    shutil.rmtree(paths.hub_upload, ignore_errors=True)
    for name in ids:
        smoke_test(paths.member(name))
    folders = {ids[n]: stage_member(paths.root, n, ids, paths.hub_upload / ids[n].split("/")[1]) for n in ids}
    family_repo = family_repo_id(namespace, prefix)
    folders[family_repo] = stage_family(paths.root, ids, paths.hub_upload / family_repo.split("/")[1])
    title = f"{prefix} model family"
    if dry_run:
        for repo_id, folder in folders.items():
            files = ", ".join(sorted(p.name for p in folder.iterdir()))
            yield f"would push {repo_id} ({'private' if private else 'public'}) in one commit: {files}"
        yield f"would create collection {title!r} in {namespace} with, in size order: {', '.join(ids.values())}"
        yield f"staged folders in {paths.hub_upload}"
        return
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint)
    for repo_id, folder in folders.items():
        status = push_folder(api, repo_id, folder, private, revision, f"Upload {repo_id} (hf_progressive)")
        yield f"{repo_id}: {status}"
    yield f"collection: {_collection(api, title, namespace, private, [*ids.values(), family_repo])}"


def _collection(api, title: str, namespace: str, private: bool, repos: list[str]) -> str:
    """Create (or find) the Collection and add the repos it lacks, in order; returns its slug."""
    collection = api.create_collection(
        title,
        namespace=namespace,
        private=private,
        exists_ok=True,
        description=f"Built with hf_progressive; family card: {repos[-1]}",
    )
    present = {item.item_id for item in collection.items}
    for repo_id in repos:
        if repo_id not in present:
            api.add_collection_item(collection.slug, item_id=repo_id, item_type="model", exists_ok=True)
    return collection.slug


def push_metrics(
    out: str | Path,
    namespace: str,
    prefix: str | None = None,
    *,
    dry_run: bool = False,
    revision: str | None = None,
    endpoint: str | None = None,
) -> Iterator[str]:
    """Re-render each published member's card (model-index, KL to its neighbours) and upload it with the eval and
    consistency results, one commit per repo, skipped when that exact content is already there."""
    paths = FamilyPaths(out)
    read_family(out)  # every member listed is there and whole
    ids = repo_ids(paths.root, namespace, prefix)
    if not dry_run:
        require_token()
    shutil.rmtree(paths.hub_metrics, ignore_errors=True)
    from huggingface_hub import HfApi

    api = None if dry_run else HfApi(endpoint=endpoint)
    for name, repo_id in ids.items():
        folder = stage_member(paths.root, name, ids, paths.hub_metrics / repo_id.split("/")[1], files=METRIC_FILES)
        if api is None:
            yield f"would update {repo_id}: {', '.join(sorted(p.name for p in folder.iterdir()))}"
            continue
        if not api.repo_exists(repo_id):
            raise CheckpointError(f"{repo_id}: not published yet; run `hf-progressive push` first.")
        yield f"{repo_id}: {push_folder(api, repo_id, folder, False, revision, 'Update metrics')}"


__all__ = ["push_family", "push_folder", "push_metrics", "smoke_test", "stage_family", "stage_member"]
