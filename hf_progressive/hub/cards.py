"""Hub cards for a built family: one card per member (parent as `base_model`, so the Hub's model tree links the
family; eval results as `model-index` metadata) and one for the family, rendered from the Jinja templates shipped in
hf_progressive/model_cards/ with `huggingface_hub.ModelCard`. Everything they show comes from the ledger."""

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..errors import CheckpointError
from ..family.ledger import FamilyPaths, Ledger
from ..utils.io import read_json


TEMPLATES_DIR = Path(__file__).parent / "model_cards"
EVAL_TASK_NAMES = {
    "hfp_gutenberg_ppl": "Gutenberg held-out perplexity (hf_progressive)",
    "hfp_gutenberg_cloze": "Gutenberg held-out cloze (hf_progressive)",
}


def _template(name: str) -> str:
    path = TEMPLATES_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: a card template is missing from this hf_progressive install; reinstall it.")
    return str(path)


def repo_ids(out: Path, namespace: str, prefix: str | None = None) -> dict[str, str]:
    """`{member name: "namespace/prefix-member"}` in build order (prefix defaults to the recipe name); every id, and
    the family repo's, is checked the way the Hub checks it (one line: a `/..` never reaches a path or the network)."""
    ledger = Ledger.read(out)
    prefix = prefix or ledger.recipe
    ids = {name: f"{namespace}/{prefix}-{name}" for name in ledger.members}
    for repo_id in [*ids.values(), family_repo_id(namespace, prefix)]:
        check_repo_id(repo_id, namespace, prefix)
    return ids


def family_repo_id(namespace: str, prefix: str) -> str:
    return f"{namespace}/{prefix}-family"


def check_repo_id(repo_id: str, namespace: str, prefix: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1 or ".." in repo_id:
            raise HFValidationError("a repo id is NAMESPACE/NAME, one slash, no '..'")
    except HFValidationError as error:
        reason = str(error).splitlines()[0].rstrip(".")
        raise CheckpointError(
            f"repo id {repo_id!r} (namespace {namespace!r}, prefix {prefix!r}) is not a valid Hub id: {reason}."
        ) from None


def _eval_results(eval_file: Path) -> tuple[list[EvalResult], list[dict]]:
    data = read_json(eval_file)
    results, rows = [], []
    for task, metrics in (data or {}).get("results", {}).items():
        for metric, value in metrics.items():
            if metric.endswith("_stderr") or metric == "sample_len":
                continue
            rows.append({"task": task, "metric": metric, "value": value})
            results.append(
                EvalResult(
                    task_type="text-generation",
                    dataset_type=task,
                    dataset_name=EVAL_TASK_NAMES.get(task, task),
                    metric_type=metric,
                    metric_value=value,
                )
            )
    return results, rows


def _neighbours(out: Path, name: str, ids: dict[str, str]) -> list[dict]:
    result = read_json(FamilyPaths(out).consistency)
    rows = []
    for pair in (result or {}).get("pairs", []):
        if name in (pair["a"], pair["b"]):
            this_is_a = pair["a"] == name
            other = pair["b"] if this_is_a else pair["a"]
            rows.append(
                {
                    "repo_id": ids.get(other, other),
                    "agreement": pair["top1_agreement"],
                    "kl_this": pair["kl_a_b"] if this_is_a else pair["kl_b_a"],
                    "kl_other": pair["kl_b_a"] if this_is_a else pair["kl_a_b"],
                }
            )
    return rows


def member_card(out: str | Path, name: str, ids: dict[str, str], license: str = "apache-2.0") -> ModelCard:
    """The card of member `name` of the family in `out`, for the repos `ids` (member name -> repo id)."""
    paths, ledger = FamilyPaths(out), Ledger.read(out)
    record = ledger.members[name]
    growth = read_json(paths.growth(name)) or {}
    config = json.loads((paths.member(name) / "config.json").read_text())
    parent = ids.get(record.parent) if record.parent else None
    eval_results, eval_rows = _eval_results(paths.member_eval(name))
    data = ModelCardData(
        language="en",
        license=license,
        library_name="transformers",
        pipeline_tag="text-generation",
        base_model=parent,
        base_model_relation="finetune" if parent else None,
        tags=["hf_progressive", config["model_type"], "model-family", "progressive-training"],
        model_name=ids[name],
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        data,
        template_path=_template("member.md"),
        repo_id=ids[name],
        member=name,
        family=ledger.recipe,
        params=_Obj(record.params),
        config=_Obj(config),
        parent_repo_id=parent,
        growth=_Obj(growth),
        record=_Obj(vars(record)),
        mode=ledger.mode,
        neighbours=[_Obj(n) for n in _neighbours(out, name, ids)],
        evals=[_Obj(e) for e in eval_rows],
        recipe_text=(ledger.recipe_text or "").strip(),
        batch_size=ledger.batch_size,
        seq_len=ledger.seq_len,
        tokenizer=ledger.tokenizer,
        data=_Obj(ledger.data),
        versions=growth.get("versions") or _versions(),
    )


def family_card(out: str | Path, ids: dict[str, str], plots: list[str] = ()) -> ModelCard:
    """The card of the whole family (for its own repo, or the collection's description)."""
    from ..analysis.consistency import kl_matrix

    ledger = Ledger.read(out)
    members = [
        {
            "name": name,
            "repo_id": ids[name],
            "params": r.params["total"],
            "tokens": r.tokens,
            "parent": ids.get(r.parent) if r.parent else None,
            "flops_cumulative": r.flops_cumulative,
            "val_loss": r.val_loss,
        }
        for name, r in ledger.members.items()
    ]
    result = read_json(FamilyPaths(out).consistency)
    kl_rows = []
    if result:
        for name, row in zip(result["members"], kl_matrix(result, "kl_a_b"), strict=True):
            kl_rows.append({"name": name, "cells": ["-" if v is None else f"{v:.4g}" for v in row]})
    data = ModelCardData(language="en", license="apache-2.0", tags=["hf_progressive", "model-family"])
    return ModelCard.from_template(
        data,
        template_path=_template("family.md"),
        family=ledger.recipe,
        mode=ledger.mode,
        members=[_Obj(m) for m in members],
        totals=_Obj(ledger.totals),
        kl_rows=[_Obj(r) for r in kl_rows],
        kl_names=result["members"] if result else [],
        plots=list(plots),
    )


class _Obj(dict):
    """A dict whose keys read as attributes in the templates (nested dicts too)."""

    def __getattr__(self, key):
        value = self.get(key)
        return _Obj(value) if isinstance(value, dict) else value


def _versions() -> dict:
    import torch
    import transformers

    from .. import __version__

    return {"hf_progressive": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


__all__ = ["family_card", "member_card", "repo_ids"]
