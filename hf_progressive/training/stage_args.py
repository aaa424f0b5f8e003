"""The `ProgressiveTrainingArguments` of one stage: what the library derives (steps, LR schedule, batch sizes, seed,
the ledger fields) and what the recipe's `training:` mappings pass straight to the Trainer (activation checkpointing,
`torch_compile`, `optim`, `bf16`, `fsdp`, `deepspeed`, `report_to`, ...).

`batch_size` is the global batch (sequences per optimizer step, the ledger's unit); `micro_batch_size` (recipe-wide or
per member) is per device, and `gradient_accumulation_steps = batch_size / (micro_batch_size x processes)`."""

import dataclasses
import math
import os

import torch

from ..errors import RecipeError


# TrainingArguments fields the library sets itself -> the recipe field to use instead
OWNED = {
    "output_dir": "--out",
    "max_steps": "tokens_per_param (or --max-steps-per-stage)",
    "num_train_epochs": "tokens_per_param",
    "learning_rate": "lr (or members[k].max_lr)",
    "lr_scheduler_type": "lr.schedule",
    "lr_scheduler_kwargs": "lr.min_lr_ratio / lr.decay_ratio",
    "warmup_steps": "lr.warmup_ratio",
    "warmup_ratio": "lr.warmup_ratio",
    "per_device_train_batch_size": "batch_size / micro_batch_size",
    "per_device_eval_batch_size": "micro_batch_size",
    "gradient_accumulation_steps": "batch_size / micro_batch_size",
    "auto_find_batch_size": "micro_batch_size",
    "seed": "seed",
    "data_seed": "seed",
    "train_sampling_strategy": "data (stages read their token window in order)",
    "weight_decay": "optimizer.weight_decay",
    "adam_beta1": "optimizer.adam_beta1",
    "adam_beta2": "optimizer.adam_beta2",
    "adam_epsilon": "optimizer.adam_epsilon",
    "max_grad_norm": "optimizer.max_grad_norm",
    "optimizer_at_growth": "optimizer.at_growth",
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "eval_steps": "eval_steps",
    "eval_strategy": "eval_steps",
    "save_strategy": "save_steps",
    "use_cpu": "nothing: it follows the machine (hide GPUs with CUDA_VISIBLE_DEVICES= to train on the CPU)",
    "push_to_hub": "hf-progressive push OUT --namespace ORG after the build (one repo per member, with cards)",
    "hub_model_id": "hf-progressive push OUT --namespace ORG --prefix NAME",
    "hub_strategy": "hf-progressive push (after the build)",
    "hub_token": "hf-progressive push (it reads your huggingface_hub login)",
    "hub_private_repo": "hf-progressive push --private",
    "hub_always_push": "hf-progressive push (after the build)",
    "hub_revision": "hf-progressive push --revision",
    "resume_from_checkpoint": "nothing: rerun the same build-family command and it resumes by itself",
}
LEDGER_FIELDS = (
    "stage_index",
    "tokens_per_step",
    "flops_per_token",
    "tokens_before_stage",
    "flops_before_stage",
    "flops_per_added_layer",
    "apollo_sampler",
)


def check_training_keys(training: dict, where: str) -> None:
    """Refuse, in one line, a `training:` key that TrainingArguments does not have, one the library owns, or a value
    that does not fit the field's annotation (`bf16: maybe`, `gradient_checkpointing: 3`); integral floats are
    coerced in place (`coerce.coerce`)."""
    import typing

    from ..utils.coerce import coerce
    from .trainer import ProgressiveTrainingArguments

    if not isinstance(training, dict):
        raise RecipeError(f"{where}: expected a mapping of TrainingArguments fields, got {type(training).__name__}.")
    known = {f.name for f in dataclasses.fields(ProgressiveTrainingArguments) if f.init}
    hints = typing.get_type_hints(ProgressiveTrainingArguments)
    for key in list(training):
        if key in OWNED or key in LEDGER_FIELDS:
            raise RecipeError(f"{where}.{key}: set by hf_progressive; use {OWNED.get(key, 'the recipe')} instead.")
        if key not in known:
            raise RecipeError(f"{where}.{key}: not a TrainingArguments field (see `transformers.TrainingArguments`).")
        training[key] = coerce(training[key], hints[key], f"{where}.{key}")


def check_stage_arguments(args, processes: int, where: str = "training") -> None:
    """What the Trainer would only find out once it runs (after family.json is written), refused in one line now:
    negative worker counts, reporting integrations that are unknown or not installed, FSDP in a 1-process CPU run,
    fp16 without a GPU, an optimizer that cannot be built, liger kernels that are not installed (a DeepSpeed config
    is checked by `_check_deepspeed` before the arguments are built)."""
    import importlib.util

    workers = args.dataloader_num_workers
    _require(workers >= 0, f"{where}.dataloader_num_workers", workers, "use 0 or more")
    check_report_to(args.report_to, f"{where}.report_to")
    if args.fsdp and processes == 1 and not torch.cuda.is_available():
        raise RecipeError(
            f"{where}.fsdp={args.fsdp!r}: FSDP shards a model over several processes on GPUs; remove it for a "
            "1-process CPU run, or launch on GPUs with accelerate launch / torchrun."
        )
    _check_optimizer(args, where)
    if args.use_liger_kernel and importlib.util.find_spec("liger_kernel") is None:
        raise RecipeError(f"{where}.use_liger_kernel: liger-kernel is not installed; pip install liger-kernel.")
    if args.fp16 and not torch.cuda.is_available():
        raise RecipeError(
            f"{where}.fp16=True: fp16 mixed precision needs a CUDA GPU and would be ignored here; remove it (bf16 "
            "runs on CPUs)."
        )


def _check_optimizer(args, where: str) -> None:
    """The optimizer the Trainer would build: its package installed, its `optim_args` readable and accepted (a
    torch optimizer is built once on a dummy parameter). The Trainer only finds out when a stage starts."""
    from transformers import Trainer

    optim = getattr(args.optim, "value", args.optim)
    try:
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
        if getattr(cls, "__module__", "").startswith("torch.optim"):
            cls([torch.nn.Parameter(torch.zeros(1))], **kwargs)
    except (ImportError, ValueError, TypeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RecipeError(f"{where}.optim={optim!r} (optim_args={args.optim_args!r}): {reason}.") from None


def _check_deepspeed(config, where: str) -> None:
    """A DeepSpeed config must be a mapping or an existing JSON file, and DeepSpeed installed (TrainingArguments
    would otherwise fail inside its own __post_init__ with an import error)."""
    import importlib.util

    if not config:
        return
    if isinstance(config, str) and not os.path.isfile(config):
        raise RecipeError(f"{where}={config!r}: no such file; give a DeepSpeed JSON config (or remove it).")
    if importlib.util.find_spec("deepspeed") is None:
        raise RecipeError(f"{where}: DeepSpeed is not installed; pip install deepspeed, or remove it.")


def check_report_to(report_to, where: str = "--report-to") -> None:
    """Every reporting integration named must be one transformers knows and one that is installed here."""
    from transformers.integrations import get_available_reporting_integrations, get_reporting_integration_callbacks

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [name for name in names if name not in ("none", "all")]
    try:
        get_reporting_integration_callbacks(names)
    except ValueError as error:
        raise RecipeError(f"{where}={report_to!r}: {error}") from None
    missing = [name for name in names if name not in get_available_reporting_integrations()]
    if missing:
        raise RecipeError(
            f"{where}={report_to!r}: {missing[0]} is not installed; pip install {missing[0]}, or report to none."
        )


def validate_batches(recipe) -> None:
    check_training_keys(recipe.training, "training")
    for k, member in enumerate(recipe.members):
        check_training_keys(member.training, f"members[{k}].training")
    for where, micro in [("micro_batch_size", recipe.micro_batch_size)] + [
        (f"members[{k}].micro_batch_size", m.micro_batch_size) for k, m in enumerate(recipe.members)
    ]:
        if micro is not None:
            _require(isinstance(micro, int) and micro > 0, where, micro, "use a positive integer")
            _require(recipe.batch_size % micro == 0, where, micro, f"it must divide batch_size={recipe.batch_size}")


def _require(ok: bool, name: str, value, fix: str) -> None:
    if not ok:
        raise RecipeError(f"{name}={value!r}: {fix}.")


def micro_batch_size(recipe, index: int) -> int | None:
    """Member `index`'s micro-batch per device: its own, else the recipe's (None: batch_size / processes)."""
    return recipe.members[index].micro_batch_size or recipe.micro_batch_size


def batch_sizes(batch_size: int, micro_batch_size: int | None, processes: int) -> dict:
    """Per-device train/eval batch and accumulation steps for a global `batch_size` over `processes`."""
    micro = micro_batch_size or batch_size // processes
    if micro < 1 or batch_size % (micro * processes):
        raise RecipeError(
            f"batch_size={batch_size} is not a multiple of micro_batch_size={micro} x {processes} processes; "
            "choose a batch_size (or micro_batch_size) so that it is."
        )
    accumulation = batch_size // (micro * processes)
    return {
        "per_device_train_batch_size": micro,
        "per_device_eval_batch_size": micro,
        "gradient_accumulation_steps": accumulation,
    }


def schedule(recipe, steps: int) -> dict:
    """Warm-up and decay of one stage (cosine, or WSD) to `lr.min_lr_ratio` x the max LR."""
    warmup = int(recipe.lr.warmup_ratio * steps)
    if recipe.lr.schedule == "wsd":
        decay = max(1, int(recipe.lr.decay_ratio * steps))
        return {
            "warmup_steps": warmup,
            "lr_scheduler_type": "warmup_stable_decay",
            "lr_scheduler_kwargs": {"num_decay_steps": decay, "min_lr_ratio": recipe.lr.min_lr_ratio},
        }
    return {
        "warmup_steps": warmup,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": recipe.lr.min_lr_ratio},
    }


def stage_schedule(recipe, member) -> dict:
    """The LR schedule of `member`'s stage. With a decay branch (`lr.across_stages: trunk`): warm up (the first
    member) or re-warm (a grown one), stay at the max LR for the rest of the trunk, then decay over the branch."""
    if not member.branch_steps:
        return schedule(recipe, member.steps)
    ratio = recipe.lr.rewarm_ratio if member.parent else recipe.lr.warmup_ratio
    return {
        "warmup_steps": math.ceil(ratio * member.trunk_steps),
        "lr_scheduler_type": "warmup_stable_decay",
        "lr_scheduler_kwargs": {"num_decay_steps": member.branch_steps, "min_lr_ratio": recipe.lr.min_lr_ratio},
    }


def training_options(recipe, index: int, overrides: dict | None = None) -> dict:
    """The Trainer options of member `index`: the recipe's `training:`, the member's, then `overrides`
    (build-family --training), later ones winning; bf16 mixed precision on a GPU that has it unless they choose."""
    chosen = {**recipe.training, **recipe.members[index].training, **(overrides or {})}
    if {"bf16", "fp16"} & set(chosen):
        return chosen
    return {"bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(), **chosen}


def _ledger_fields(plan, member) -> dict:
    """What places the stage in the family's ledger: tokens and FLOPs before it, FLOPs per token, Apollo's depths."""
    previous = plan.members[member.index - 1] if member.index and plan.mode != "independent" else None
    return {
        "stage_index": member.index,
        "tokens_per_step": plan.recipe.batch_size * plan.recipe.seq_len,
        "flops_per_token": member.flops_per_token,
        "tokens_before_stage": sum(m.stage_tokens for m in plan.members[: member.index]) if previous else 0,
        "flops_before_stage": previous.cumulative_flops if previous else 0.0,
        "flops_per_added_layer": member.flops_per_added_layer,
        "apollo_sampler": dataclasses.asdict(member.apollo) if member.apollo else None,
    }


def stage_arguments(plan, member, output_dir: str, processes: int, overrides: dict | None = None, **extra):
    """`ProgressiveTrainingArguments` of `member` (a `family.MemberPlan`) of `plan`; `extra` are further
    Trainer options the caller decides (report_to, ...). Type errors in `training:` are one line."""
    from transformers import HfArgumentParser

    from .trainer import ProgressiveTrainingArguments

    recipe = plan.recipe
    micro = micro_batch_size(recipe, member.index)
    owned = {
        "output_dir": output_dir,
        "max_steps": max(1, member.steps),  # a stage of 0 steps (a pretrained member) only evaluates
        "learning_rate": member.max_lr,
        **batch_sizes(recipe.batch_size, micro, processes),
        "weight_decay": recipe.optimizer.weight_decay,
        "adam_beta1": recipe.optimizer.adam_beta1,
        "adam_beta2": recipe.optimizer.adam_beta2,
        "adam_epsilon": recipe.optimizer.adam_epsilon,
        "max_grad_norm": recipe.optimizer.max_grad_norm,
        "seed": recipe.seed + member.index,
        "logging_steps": recipe.logging_steps,
        "save_steps": recipe.save_steps,
        "save_total_limit": 2,
        "eval_strategy": "steps",
        "eval_steps": recipe.eval_steps,
        "use_cpu": not torch.cuda.is_available(),
        **stage_schedule(recipe, member),
        **_ledger_fields(plan, member),
        "optimizer_at_growth": recipe.optimizer.at_growth,
        "ddp_find_unused_parameters": False,
    }
    options = {**extra, **training_options(recipe, member.index, overrides)}
    _check_deepspeed(options.get("deepspeed"), f"members[{member.index}].training.deepspeed")
    try:  # HfArgumentParser refuses keys TrainingArguments does not have; __post_init__ checks the values
        (args,) = HfArgumentParser(ProgressiveTrainingArguments).parse_dict({**owned, **options})
        return args
    except (TypeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RecipeError(f"training: {reason}") from None


__all__ = [
    "OWNED",
    "batch_sizes",
    "check_report_to",
    "check_stage_arguments",
    "check_training_keys",
    "micro_batch_size",
    "schedule",
    "stage_arguments",
    "stage_schedule",
    "training_options",
    "validate_batches",
]
