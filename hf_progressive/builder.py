"""Build a family: the stage loop. For each member: grow it from the previous one (or start from scratch), train it
on exactly its token window with a fresh `ProgressiveTrainer`, evaluate, save it atomically as a vanilla checkpoint
in OUT/members/<name>/, and record it in the ledger OUT/family.json. Rerunning the same command resumes: finished
members are skipped and the current stage continues from its last Trainer checkpoint."""

import json
import shutil
import time
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import TrainerCallback, set_seed
from transformers.utils import logging

from .checkpoint import (
    atomic_output_dir,
    check_writable,
    last_complete_checkpoint,
    load_model,
    write_atomic,
    write_json,
)
from .configuration_llama import ProgressiveLlamaConfig
from .data import BlockWindow, check_tokenizer, get_tokenizer, iter_texts, pack
from .errors import CheckpointError
from .expansion import carry_tensor
from .family import FamilyPlan, MemberPlan, plan_family
from .modeling_llama import ProgressiveLlamaForCausalLM
from .peft_stage import finish_stage_model, optimizer_state_bytes, prepare_stage_model, trainable_parameters
from .plan import GrowthPlan
from .recipe import Recipe
from .trainer import ProgressiveTrainer, ProgressiveTrainingArguments, optimizer_state_by_name


logger = logging.get_logger(__name__)
LEDGER, TRAINING_LOG, OPTIMIZER_FINAL, CLOCK = "family.json", "training_log.json", "optimizer_final.pt", "clock.json"


def process_state() -> PartialState:
    """The process group, initialised once: on a machine without CUDA it is the CPU (gloo) one, as
    `TrainingArguments(use_cpu=True)` makes it; a bare `PartialState()` would see no GPU and a single process."""
    return PartialState(cpu=not torch.cuda.is_available())


def build_family(
    recipe: Recipe,
    out: str | Path,
    mode: str | None = None,
    *,
    max_steps: int | None = None,
    report_to: str | list[str] = "none",
    callbacks: list | None = None,
) -> dict:
    """Build (or resume building) every member of `recipe` into `out`; returns the ledger (family.json)."""
    out, state = Path(out), process_state()
    plan = plan_family(recipe, mode, max_steps)
    check_writable(out)
    ledger = _open_ledger(out, plan, max_steps)
    if state.is_main_process:  # temp dirs of member saves that a kill interrupted
        for stale in (out / "members").glob(".*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    tokenizer, blocks, validation = prepare_data(recipe, plan, out / "data")
    parent = None
    for member in plan.members:
        if member.name in ledger["members"] and (out / "members" / member.name / "config.json").is_file():
            parent = None  # loaded from disk only if the next stage grows from it
            continue
        if member.parent and parent is None:
            parent = load_model(out / "members" / member.parent, ProgressiveLlamaForCausalLM)
        stage = _StageRun(plan, member, out, report_to, callbacks or [])
        parent, record = stage.run(parent, tokenizer, blocks, validation)
        if state.is_main_process:
            ledger["members"][member.name] = record
            _write_ledger(out, ledger, plan)
            for checkpoint in (out / "stages" / member.name).glob("checkpoint-*"):  # only needed to resume
                shutil.rmtree(checkpoint, ignore_errors=True)
        state.wait_for_everyone()
        if plan.mode == "independent":
            parent = None
    return json.loads((out / LEDGER).read_text())


class _StageRun:
    """One member's stage: grow, train (resuming if a checkpoint exists), evaluate, save."""

    def __init__(self, plan: FamilyPlan, member: MemberPlan, out: Path, report_to, callbacks: list):
        self.plan, self.member, self.out, self.report_to, self.callbacks = plan, member, out, report_to, callbacks
        self.dir = out / "stages" / member.name
        self.recipe = plan.recipe

    def run(self, parent, tokenizer, blocks, validation):
        set_seed(self.recipe.seed + self.member.index)
        spec = self.recipe.members[self.member.index]
        grown = self._grow(parent, tokenizer)
        carried = self._carried_state(parent, grown) if spec.train_inherited != "lora" else None
        model = prepare_stage_model(grown, spec) if self.member.parent else grown
        window = BlockWindow(blocks, self.member.window)
        clock = _Clock(self.dir)
        trainer = ProgressiveTrainer(
            model=model,
            args=self._args(),
            train_dataset=window,
            eval_dataset=validation,
            processing_class=tokenizer,
            callbacks=[clock, *self.callbacks],
            carried_optimizer_state=carried,
        )
        resume = last_complete_checkpoint(self.dir, remove_others=process_state().is_main_process)
        if resume and model is not grown:  # LoRA checkpoints hold only adapters, not the fully trained new layers
            logger.warning(f"{self.member.name}: a LoRA stage cannot resume mid-stage; restarting it")
            resume = None
        clock.start(resume)
        trainer.train(resume_from_checkpoint=resume)
        eval_loss = trainer.evaluate()["eval_loss"]
        usage = self._usage(trainer)
        model = finish_stage_model(trainer.model)
        record = self._record(trainer, window, eval_loss, clock.elapsed(), self._boundary_loss(model, blocks))
        record.update(usage, flops_stage=usage["flops_per_token"] * record["tokens"])
        if process_state().is_main_process:
            self._save(model, tokenizer, trainer)
        return model, record

    def _grow(self, parent, tokenizer):
        special = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("bos", "eos", "pad")}
        config = ProgressiveLlamaConfig.from_dict({**self.member.config.to_dict(), **special})
        if self.member.parent is None:
            model = ProgressiveLlamaForCausalLM(config)
            model.growth = {"parent": None, "operator": "from_scratch", "seed": self.recipe.seed + self.member.index}
            return model
        model = ProgressiveLlamaForCausalLM.from_smaller(
            parent, config, method=self.member.method, seed=self.recipe.seed
        )
        model.growth["parent"] = self.member.parent  # the family member, not a temp path
        return model

    def _carried_state(self, parent, model) -> dict | None:
        """The parent's final AdamW moments mapped onto `model` (optimizer.at_growth: carry)."""
        if self.recipe.optimizer.at_growth != "carry" or parent is None:
            return None
        path = self.out / "stages" / self.member.parent / OPTIMIZER_FINAL
        if not path.is_file():  # e.g. the parent's stage trained LoRA adapters, whose moments do not map
            logger.warning(f"{self.member.name}: no optimizer state saved for {self.member.parent}; resetting AdamW")
            return None
        source = torch.load(path, weights_only=True)
        growth = GrowthPlan.from_configs(parent.config, model.config, self.member.method, self.recipe.seed)
        carried = {}
        for name, _param in model.named_parameters():
            if _source_name(name, growth) not in source:  # frozen in the parent's stage: no moments to carry
                continue
            tensors = {
                k: carry_tensor(name, lambda key, k=k: source[key][k], growth) for k in ("exp_avg", "exp_avg_sq")
            }
            step = source[_source_name(name, growth)]["step"]
            carried[name] = {"step": step.clone() if torch.is_tensor(step) else step, **tensors}
        return carried

    def _args(self) -> ProgressiveTrainingArguments:
        recipe, member = self.recipe, self.member
        world = process_state().num_processes
        if recipe.batch_size % world:
            raise CheckpointError(
                f"batch_size={recipe.batch_size} is not divisible by {world} processes; "
                "choose a batch_size that is a multiple of --num_processes."
            )
        previous = self.plan.members[member.index - 1] if member.index and self.plan.mode != "independent" else None
        schedule = _schedule(recipe, member.steps)
        return ProgressiveTrainingArguments(
            output_dir=str(self.dir),
            max_steps=member.steps,
            learning_rate=member.max_lr,
            per_device_train_batch_size=recipe.batch_size // world,
            per_device_eval_batch_size=recipe.batch_size // world,
            weight_decay=recipe.optimizer.weight_decay,
            adam_beta1=recipe.optimizer.adam_beta1,
            adam_beta2=recipe.optimizer.adam_beta2,
            adam_epsilon=recipe.optimizer.adam_epsilon,
            max_grad_norm=recipe.optimizer.max_grad_norm,
            seed=recipe.seed + member.index,
            logging_steps=recipe.logging_steps,
            save_steps=recipe.save_steps,
            save_total_limit=2,
            eval_strategy="steps",
            eval_steps=recipe.eval_steps,
            report_to=self.report_to,
            use_cpu=not torch.cuda.is_available(),
            bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),  # mixed precision on GPUs only
            **schedule,
            stage_index=member.index,
            tokens_per_step=recipe.batch_size * recipe.seq_len,
            flops_per_token=member.flops_per_token,
            tokens_before_stage=sum(m.stage_tokens for m in self.plan.members[: member.index]) if previous else 0,
            flops_before_stage=previous.cumulative_flops if previous else 0.0,
            optimizer_at_growth=recipe.optimizer.at_growth,
            ddp_find_unused_parameters=False,
        )

    def _boundary_loss(self, model, blocks) -> float | None:
        """This member's loss on the first batch of the next stage: a function-preserving growth must start the
        next stage at the same loss on that same batch."""
        following = [m for m in self.plan.members if m.parent == self.member.name]
        if not following:
            return None
        window = BlockWindow(blocks, following[0].window)
        ids = torch.stack([window[i]["input_ids"] for i in range(self.recipe.batch_size)]).to(model.device)
        model.eval()
        with torch.no_grad():
            return model(ids, labels=ids).loss.item()

    def _usage(self, trainer) -> dict:
        """Trainable parameters, optimizer-state bytes and the stage's FLOPs per token. With frozen or LoRA-wrapped
        inherited weights, FLOPs/token = 6 N - 2 N_frozen + 6 N_lora (+ attention): a frozen weight still costs its
        forward and its activation-gradient matmuls, only the weight-gradient matmul is saved."""
        trainable, total = trainable_parameters(trainer.model)
        lora = sum(p.numel() for name, p in trainer.model.named_parameters() if "lora_" in name)
        frozen = total - trainable
        return {
            "train_inherited": self.recipe.members[self.member.index].train_inherited,
            "trainable_params": trainable,
            "optimizer_state_bytes": optimizer_state_bytes(trainer.optimizer),
            "flops_per_token": self.member.flops_per_token - 2 * frozen + 6 * lora,
        }

    def _record(self, trainer, window, eval_loss, wall_time, boundary_loss) -> dict:
        member, history = self.member, trainer.state.log_history
        losses = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]
        steps = trainer.state.global_step
        return {
            "index": member.index,
            "parent": member.parent,
            "method": member.method,
            "sizes": {
                k: getattr(member.config, k)
                for k in (
                    "hidden_size",
                    "intermediate_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "num_key_value_heads",
                )
            },
            "params": member.params,
            "steps": steps,
            "tokens": steps * self.recipe.batch_size * self.recipe.seq_len,
            "data_passes": window.epochs,
            "max_lr": member.max_lr,
            "flops_independent": member.independent_flops,
            "wall_time_s": round(wall_time, 2),
            "world_size": process_state().num_processes,
            "first_step_loss": losses[0][1] if losses and losses[0][0] == 1 else None,
            "final_train_loss": losses[-1][1] if losses else None,
            "val_loss": eval_loss,
            "boundary_loss": boundary_loss,
        }

    def _save(self, model, tokenizer, trainer) -> None:
        with atomic_output_dir(self.out / "members" / self.member.name, overwrite=True) as tmp:
            model.save_pretrained(tmp)  # weights, config, generation config, growth.json
            tokenizer.save_pretrained(tmp)
            write_json(tmp / TRAINING_LOG, {"stage": self.member.name, "log_history": trainer.state.log_history})
        lora = self.recipe.members[self.member.index].train_inherited == "lora" and self.member.parent
        if self.recipe.optimizer.at_growth == "carry" and not lora:  # LoRA moments do not map onto weights
            state = optimizer_state_by_name(trainer.optimizer, model)
            write_atomic(self.dir / OPTIMIZER_FINAL, lambda handle: torch.save(state, handle))


def _source_name(name: str, growth: GrowthPlan) -> str:
    from .expansion import source_keys
    from .keys import TIED_KEYS

    key = TIED_KEYS.get(name, name) if growth.dst.tie_word_embeddings else name
    return source_keys(key, growth)[0]


def _schedule(recipe: Recipe, steps: int) -> dict:
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


class _Clock(TrainerCallback):
    """Wall time of a stage across attempts: time up to the checkpoint a run resumes from, plus this run's."""

    def __init__(self, stage_dir: Path):
        self.file, self.prior, self.t0 = stage_dir / CLOCK, 0.0, time.time()

    def start(self, resume: str | None) -> None:
        self.t0 = time.time()
        if resume and self.file.is_file():
            saved = json.loads(self.file.read_text())
            self.prior = saved.get(Path(resume).name, 0.0)

    def elapsed(self) -> float:
        return self.prior + time.time() - self.t0

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            saved = json.loads(self.file.read_text()) if self.file.is_file() else {}
            write_json(self.file, {**saved, f"checkpoint-{state.global_step}": self.elapsed()})


def prepare_data(recipe: Recipe, plan: FamilyPlan, data_dir: Path):
    """Tokenizer, training blocks and validation blocks, built once (main process first) and cached in data_dir."""
    from transformers import AutoTokenizer

    state = process_state()
    with state.main_process_first():
        if not (data_dir / "blocks.pt").is_file():
            if state.is_main_process:
                _build_data(recipe, plan, data_dir)
        tokenizer = AutoTokenizer.from_pretrained(data_dir / "tokenizer")
        check_tokenizer(tokenizer, recipe.vocab_size)
        blocks = torch.load(data_dir / "blocks.pt", weights_only=True)
        validation = torch.load(data_dir / "validation.pt", weights_only=True)
    return tokenizer, blocks, [{"input_ids": row, "labels": row} for row in validation]


def _build_data(recipe: Recipe, plan: FamilyPlan, data_dir: Path) -> None:
    tokenizer = get_tokenizer(recipe)
    needed = max(max(end for _, end in m.window.spans()) for m in plan.members)  # blocks any stage reads
    blocks = pack(iter_texts(recipe.data, "train"), tokenizer, recipe.seq_len, needed)
    if len(blocks) < needed:
        logger.warning(
            f"the corpus holds {len(blocks)} blocks of {recipe.seq_len} tokens but the plan reads "
            f"{needed}: stages wrap around and repeat data (data_passes in the ledger says how much)"
        )
    validation = pack(iter_texts(recipe.data, "validation"), tokenizer, recipe.seq_len, recipe.data.validation_blocks)
    with atomic_output_dir(data_dir, overwrite=True) as tmp:
        tokenizer.save_pretrained(tmp / "tokenizer")
        torch.save(blocks, tmp / "blocks.pt")
        torch.save(validation, tmp / "validation.pt")


def _open_ledger(out: Path, plan: FamilyPlan, max_steps: int | None) -> dict:
    """The ledger to continue: refuse to mix two different families in one OUT."""
    identity = {"recipe": plan.recipe.name, "mode": plan.mode, "recipe_text": plan.recipe.text, "max_steps": max_steps}
    if (out / LEDGER).is_file():
        ledger = json.loads((out / LEDGER).read_text())
        for key, value in identity.items():
            if ledger.get(key) != value:
                raise CheckpointError(
                    f"{out}: holds a family built with another {key} ({ledger.get(key)!r:.60}); "
                    "use a new --out, or delete it to start over."
                )
        return ledger
    return {**identity, "members": {}}


def _write_ledger(out: Path, ledger: dict, plan: FamilyPlan) -> None:
    records = list(ledger["members"].values())
    cumulative = 0.0
    for record in records:  # cumulative along the build order (independent mode: running total)
        cumulative += record["flops_stage"]
        record["flops_cumulative"] = cumulative
    ledger["totals"] = {
        "flops": cumulative,
        "flops_independent": sum(r["flops_independent"] for r in records),
        "tokens": sum(r["tokens"] for r in records),
        "wall_time_s": round(sum(r["wall_time_s"] for r in records), 2),
        "members_done": len(records),
        "members_planned": len(plan.members),
    }
    ledger["totals"]["saving"] = 1 - cumulative / ledger["totals"]["flops_independent"]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / LEDGER, ledger)


__all__ = ["LEDGER", "build_family", "prepare_data", "process_state"]
