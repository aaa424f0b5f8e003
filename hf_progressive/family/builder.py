"""Build a family: the stage loop. For each member: grow it from the previous one (or start from scratch), train it
on exactly its token window with a fresh `ProgressiveTrainer`, evaluate, save it atomically as a vanilla checkpoint
in OUT/members/<name>/, and record it in the ledger (ledger.py owns OUT's layout and family.json). Rerunning the same
command resumes: finished members are skipped and the current stage continues from its last Trainer checkpoint."""

import contextlib
import shutil
from pathlib import Path

import torch
from transformers import PrinterCallback, ProgressCallback, set_seed
from transformers.utils import logging

from ..data.blocks import BlockWindow, as_ids, check_ids
from ..errors import CheckpointError
from ..expansion.arguments import GrowArguments
from ..expansion.checkpoint import last_complete_checkpoint, load_model, publish_dir
from ..expansion.grow import grow_checkpoint, plan_growth
from ..expansion.operators import carry_state_dict
from ..expansion.record import GROWTH_FILE
from ..expansion.sizes import SIZE_FIELDS
from ..models.progressive import progressive_classes
from ..training.peft_stage import finish_stage_model, optimizer_state_bytes, prepare_stage_model, trainable_parameters
from ..training.stage_args import (
    micro_batch_size,
    stage_arguments,
)
from ..training.trainer import (
    ProgressiveTrainer,
    ProgressiveTrainingArguments,
    StageClock,
    optimizer_state_by_name,
    process_state,
)
from ..utils.io import read_json, write_atomic, write_json
from .budget import stage_flops_per_token
from .console import HEADER, StepLines, ledger_row, say
from .family_plan import FamilyPlan, MemberPlan, plan_family
from .ledger import FamilyPaths, Ledger, MemberRecord, build_lock, check_member, check_out
from .preflight import check_options, last_index
from .pretrained import load_pretrained
from .recipe import Recipe
from .recipe_text import first_difference
from .store import family_store
from .trunk import TrunkSnapshot, growth_source, trunk_boundary_loss


logger = logging.get_logger(__name__)


def build_family(
    recipe: Recipe,
    out: str | Path,
    mode: str | None = None,
    *,
    max_steps: int | None = None,
    report_to: str | list[str] = "none",
    callbacks: list | None = None,
    data: str | None = None,
    training: dict | None = None,
    until: str | None = None,
    console: bool = False,
) -> Ledger:
    """Build (or resume building) every member of `recipe` into `out`; returns the ledger. `data`: a token store
    (hf-progressive prepare-data) to train on; default the recipe's `data.prepared`, else OUT/data made here.
    `training`: TrainingArguments fields over the recipe's `training:` for every stage. `until`: stop after this
    member (so each stage can be its own launch; the next run resumes after it). `console`: print one compact line
    per logging step and each member's ledger row (family/console.py) instead of the Trainer's own output."""
    check_out(out)  # before FamilyPaths: an empty --out would read as "."
    paths, state = FamilyPaths(out), process_state()
    plan = plan_family(recipe, mode, max_steps)
    check_options(plan, paths, training, report_to, until)
    with build_lock(paths.root) if state.is_main_process else contextlib.nullcontext():
        return _build(plan, paths, max_steps, data, until, (report_to, callbacks or [], training, console))


def _build(plan: FamilyPlan, paths: FamilyPaths, max_steps, data, until, stage_options) -> Ledger:
    """The stage loop, under OUT's lock. The ledger (the build's identity) is on disk before any stage writes."""
    state = process_state()
    ledger = _open_ledger(paths, plan, max_steps)
    if state.is_main_process:  # temp dirs of member saves that a kill interrupted
        for stale in paths.members.glob(".*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    tokenizer, store = family_store(plan.recipe, plan, paths, data)  # the store carries its own identity
    ledger.fix_tokenizer(store.manifest["tokenizer_hash"], store.path)
    ledger.data = {**store.data_request, "store": paths.relative(store.path)}  # what was trained on
    pending = _pending(plan, paths, ledger, until, store)
    if state.is_main_process:
        ledger.write(paths.root)
    state.wait_for_everyone()
    blocks, validation = store.train, [{"input_ids": ids, "labels": ids} for ids in as_ids(store.validation)]
    for member in pending:
        if member is not pending[0]:  # the first was checked before the ledger was written
            _check_stage_data(plan, member, blocks, store.path)
        stage = _StageRun(plan, member, paths, *stage_options)
        record = stage.run(tokenizer, blocks, validation)
        if state.is_main_process:
            ledger.add(member.name, record)
            ledger.write(paths.root)
            if stage.console:
                say(f"{HEADER}\n{ledger_row(member.name, ledger.members[member.name])}")
            for checkpoint in paths.stage(member.name).glob("checkpoint-*"):  # only needed to resume
                shutil.rmtree(checkpoint, ignore_errors=True)
            shutil.rmtree(paths.grown(member.name), ignore_errors=True)
        state.wait_for_everyone()
    return Ledger.read(paths.root)


def _pending(plan: FamilyPlan, paths: FamilyPaths, ledger: Ledger, until, store) -> list[MemberPlan]:
    """The members this run trains, after checking what it builds on: finished members must still be whole (the
    next stage grows from them), and the validation blocks and the first window to train on must hold only ids the
    model has embeddings for."""
    members = plan.members[: last_index(plan, until) + 1]
    pending = [m for m in members if not (m.name in ledger.members and paths.is_saved(m.name))]
    for member in members:
        if member not in pending:
            check_member(paths, member.name)
    check_ids(store.validation, plan.recipe.vocab_size, store.path)
    if pending:
        _check_stage_data(plan, pending[0], store.train, store.path)
    return pending


def _check_stage_data(plan: FamilyPlan, member: MemberPlan, blocks, where) -> None:
    """Every id a stage reads must have an embedding row: its window, and the first batch of the next window (its
    boundary loss), checked before the stage trains."""
    vocab = plan.recipe.vocab_size
    BlockWindow(blocks, member.window).check_ids(vocab, where)
    following = [m for m in plan.members if m.parent == member.name]
    if following:
        window = BlockWindow(blocks, following[0].window)
        rows = {window.block_index(i) % len(blocks) for i in range(min(plan.recipe.batch_size, len(window)))}
        check_ids(blocks, vocab, where, [(row, row + 1) for row in sorted(rows)])


class _StageRun:
    """One member's stage: grow, train (resuming if a checkpoint exists), evaluate, save."""

    def __init__(
        self, plan: FamilyPlan, member: MemberPlan, paths: FamilyPaths, report_to, callbacks, training, console
    ):
        self.plan, self.member, self.paths, self.report_to, self.callbacks = plan, member, paths, report_to, callbacks
        self.training, self.console = training, console
        self.dir = paths.stage(member.name)
        self.recipe, self.spec = plan.recipe, plan.recipe.members[member.index]

    def run(self, tokenizer, blocks, validation) -> MemberRecord:
        set_seed(self.recipe.seed + self.member.index)
        grown = self._grow(tokenizer)
        model = prepare_stage_model(grown, self.spec) if self.member.parent else grown
        window, clock = BlockWindow(blocks, self.member.window), StageClock(self.paths.clock(self.member.name))
        trainer = ProgressiveTrainer(
            model=model,
            args=self._args(),
            train_dataset=window,
            eval_dataset=validation,
            processing_class=tokenizer,
            callbacks=[clock, *self.callbacks],
            carried_optimizer_state=self._carried_state(grown),
        )
        if self.member.branch_steps:  # the trunk, saved before the decay branch: the next member grows from it
            at, boundary = self.member.trunk_steps, lambda trained: self._boundary_loss(trained, blocks)
            trainer.add_callback(TrunkSnapshot(trainer, self.paths, self.member.name, at, self._carries(), boundary))
        if self.console:  # compact lines instead of the Trainer's dicts and bars (saves draw one per shard)
            for noisy in (ProgressCallback, PrinterCallback):
                trainer.remove_callback(noisy)
            trainer.add_callback(StepLines(self.member.name))
            logging.disable_progress_bar()
        resume = last_complete_checkpoint(self.dir, remove_others=process_state().is_main_process)
        if resume and model is not grown:  # LoRA checkpoints hold only adapters, not the fully trained new layers
            logger.warning(f"{self.member.name}: a LoRA stage cannot resume mid-stage; restarting it")
            resume = None
        clock.start(resume)
        if self.member.steps:  # a pretrained member without a budget is evaluated and saved, not trained
            trainer.train(resume_from_checkpoint=resume)
        eval_loss = trainer.evaluate()["eval_loss"]
        usage = self._usage(trainer)
        model = finish_stage_model(trainer.model)
        trunk = self.member.branch_steps  # the next member grows from the trunk, not from this released member
        boundary = trunk_boundary_loss(self.paths, self.member.name) if trunk else self._boundary_loss(model, blocks)
        record = self._record(trainer, window, eval_loss, clock.elapsed(), boundary, usage)
        self._save(model, tokenizer, trainer)
        if self.console:
            logging.enable_progress_bar()
        return record

    def _grow(self, tokenizer):
        if self.member.index == 0 and self.spec.pretrained:
            return load_pretrained(self.recipe)
        if self.member.parent is None:  # from scratch, with the tokenizer's special tokens (growths inherit them)
            special = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("bos", "eos", "pad")}
            config_class, model_class = progressive_classes(self.member.config)
            model = model_class(config_class.from_dict({**self.member.config.to_dict(), **special}))
            model.growth = {"parent": None, "operator": "from_scratch", "seed": self.recipe.seed + self.member.index}
            return model
        return self._grown()

    def _grown(self):
        """The member grown from its saved parent: streamed once, in bounded memory, by the main process (and
        verified there), then loaded by every process; its plan is resolved on each process for `carry`."""
        parent_dir, _ = growth_source(self.paths, self.member.parent, self._parent_trunk())
        grown_dir = self.paths.grown(self.member.name)
        sizes = {key: getattr(self.member.config, key) for key in SIZE_FIELDS}
        args = GrowArguments(
            **sizes, method=self.member.method, seed=self.recipe.seed, noise_std=self.spec.noise_std, overwrite=True
        )
        if process_state().is_main_process and not (grown_dir / "config.json").is_file():
            grow_checkpoint(str(parent_dir), str(grown_dir), args, progress=False)
        process_state().wait_for_everyone()
        model = load_model(grown_dir, progressive_classes(self.member.config)[1])
        model.growth = {**read_json(grown_dir / GROWTH_FILE), "parent": self.member.parent}  # the member, not a path
        model.growth_plan = plan_growth(parent_dir, args)
        return model

    def _parent_trunk(self) -> bool:
        """Whether the parent's stage had a decay branch (its trunk, not the released member, is grown)."""
        return bool(self.plan.members[self.member.index - 1].branch_steps)

    def _carries(self) -> bool:
        """`optimizer.at_growth: carry` applies to this stage (full training: LoRA moments do not map onto weights)."""
        lora = self.spec.train_inherited == "lora" and self.member.parent is not None
        return self.recipe.optimizer.at_growth == "carry" and not lora

    def _carried_state(self, grown) -> dict | None:
        """The parent's final AdamW moments mapped onto the grown model through the plan it was grown with."""
        if not self._carries() or grown.growth_plan is None:
            return None
        _, path = growth_source(self.paths, self.member.parent, self._parent_trunk())
        if not path.is_file():  # e.g. the parent's stage trained LoRA adapters, whose moments do not map
            logger.warning(f"{self.member.name}: no optimizer state saved for {self.member.parent}; resetting AdamW")
            return None
        return carry_state_dict(torch.load(path, weights_only=True), grown.growth_plan)

    def _args(self) -> ProgressiveTrainingArguments:
        processes = process_state().num_processes
        extra = {"report_to": self.report_to}
        return stage_arguments(self.plan, self.member, str(self.dir), processes, self.training, **extra)

    def _boundary_loss(self, model, blocks) -> float | None:
        """This member's loss on the first batch of the next stage: a function-preserving growth must start the
        next stage at the same loss on that same batch."""
        following = [m for m in self.plan.members if m.parent == self.member.name]
        if not following:
            return None
        window = BlockWindow(blocks, following[0].window)
        ids = torch.stack([window[i]["input_ids"] for i in range(self.recipe.batch_size)]).to(model.device)
        parts = ids.split(micro_batch_size(self.recipe, self.member.index) or len(ids))
        model.eval()
        with torch.no_grad():  # in micro-batches of equal size: the mean of their means is the batch's mean
            return sum(model(part, labels=part).loss.item() for part in parts) / len(parts)

    def _usage(self, trainer) -> dict:
        """Trainable parameters, optimizer-state bytes and the stage's FLOPs per token (frozen and LoRA weights
        counted by `budget.stage_flops_per_token`)."""
        trainable, total = trainable_parameters(trainer.model)
        lora = sum(p.numel() for name, p in trainer.model.named_parameters() if "lora_" in name)
        return {
            "train_inherited": self.spec.train_inherited,
            "trainable_params": trainable,
            "optimizer_state_bytes": optimizer_state_bytes(trainer.optimizer) if trainer.optimizer else 0,
            "flops_per_token": stage_flops_per_token(self.member.flops_per_token, total - trainable, lora),
        }

    def _record(self, trainer, window, eval_loss, wall_time, boundary_loss, usage) -> MemberRecord:
        member, history = self.member, trainer.state.log_history
        losses = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]
        steps = trainer.state.global_step
        tokens = steps * self.recipe.batch_size * self.recipe.seq_len
        return MemberRecord(
            index=member.index,
            parent=member.parent,
            method=member.method,
            sizes={k: getattr(member.config, k) for k in SIZE_FIELDS},
            params=member.params,
            steps=trainer.state.global_step,
            tokens=tokens,
            data_passes=window.epochs,
            max_lr=member.max_lr,
            flops_independent=member.independent_flops,
            wall_time_s=round(wall_time, 2),
            world_size=process_state().num_processes,
            first_step_loss=losses[0][1] if losses and losses[0][0] == 1 else None,
            final_train_loss=losses[-1][1] if losses else None,
            val_loss=eval_loss,
            boundary_loss=boundary_loss,
            source=self.spec.pretrained if self.member.index == 0 else None,
            flops_stage=usage["flops_per_token"] * tokens + trainer.virtual_flops(steps),
            branch_steps=member.branch_steps,
            virtual_layers=trainer.virtual_layers(steps),
            **usage,
        )

    def _save(self, model, tokenizer, trainer) -> None:
        """Save the member on every process: the Trainer gathers a sharded (FSDP / ZeRO-3) model and writes it from
        the main process into a staging folder, which then replaces OUT/members/<name> in one rename."""
        name, state = self.member.name, process_state()
        staging = self.paths.members / f".{name}.tmp-save"  # the same path on every process
        if state.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        state.wait_for_everyone()
        if model is trainer.model:  # weights, config, generation config, growth.json, tokenizer
            trainer.save_model(str(staging))
        elif state.is_main_process:  # LoRA adapters merged into a plain model that this process holds
            model.save_pretrained(staging)
        if state.is_main_process:
            (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle: member folders hold safetensors only
            tokenizer.save_pretrained(staging)
            log = {"stage": name, "log_history": trainer.state.log_history}
            write_json(staging / self.paths.training_log(name).name, log)
            publish_dir(staging, self.paths.member(name), owned=lambda _: True)  # OUT/members: ours (OUT is a family)
            if self._carries() and trainer.optimizer is not None:  # None: a pretrained member that did not train
                moments = optimizer_state_by_name(trainer.optimizer, model)
                write_atomic(self.paths.optimizer_final(name), lambda handle: torch.save(moments, handle))
        state.wait_for_everyone()


def _open_ledger(paths: FamilyPaths, plan: FamilyPlan, max_steps: int | None) -> Ledger:
    """The ledger to continue. Another recipe, or another request with finished members, is refused; another request
    of this recipe that finished no member (a smoke run stopped early) left only stale stage checkpoints, which the
    main process removes before starting over (the token store checks its own identity)."""
    fresh = Ledger.for_plan(plan, max_steps)
    if not paths.ledger.is_file():
        return fresh
    ledger = Ledger.read(paths.root)
    key = ledger.identity_mismatch(fresh)
    if key is None:
        return ledger
    if ledger.members or key == "recipe":
        differs = first_difference(ledger.recipe_text, fresh.recipe_text) if key == "recipe_text" else None
        what = f"recipe (field {differs})" if differs else f"{key} ({getattr(ledger, key)!r:.60})"
        raise CheckpointError(
            f"{paths.root}: holds a family built with another {what}; use a new --out, or delete it to start over."
        )
    if process_state().is_main_process:
        logger.warning(f"{paths.root}: an unfinished build with another {key} (no member done); starting over")
        shutil.rmtree(paths.stages, ignore_errors=True)
    process_state().wait_for_everyone()
    return fresh


__all__ = ["build_family", "process_state"]
