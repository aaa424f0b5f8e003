"""`ProgressiveTrainingArguments` and `ProgressiveTrainer`: one stage of a family, as a Hugging Face Trainer.
The stage loop (grow, train, save, ledger) lives in builder.py; this file adds to the Trainer only what a stage
needs: the token/FLOP ledger in every log line, sequential data (the order is part of the ledger), and AdamW
moments carried over from the parent through the growth's index maps."""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging

from ..utils.io import storage_errors, write_json
from .apollo import DepthSampler, virtual_depth
from .optim import GrownAdamW


logger = logging.get_logger(__name__)


def process_state() -> PartialState:
    """The process group, initialised once: on a machine without CUDA it is the CPU (gloo) one, as
    `TrainingArguments(use_cpu=True)` makes it; a bare `PartialState()` would see no GPU and a single process."""
    return PartialState(cpu=not torch.cuda.is_available())


@dataclass
class ProgressiveTrainingArguments(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] for one stage of a progressively trained family.

    > Parameters that place the stage in the family

    stage_index (`int`, defaults to `0`): position of the member in the family (logged as `stage`).
    tokens_per_step (`int`, defaults to `0`): tokens per optimizer step across all processes (batch x seq_len).
    flops_per_token (`float`, defaults to `0.0`): training FLOPs per token of this member (budget.flops_per_token).
    tokens_before_stage (`int`) / flops_before_stage (`float`): what the family had consumed when the stage began.

    > Parameters that control the growth

    optimizer_at_growth (`str`, defaults to `"reset"`): `"reset"` starts AdamW fresh; `"carry"` maps the parent's
        moments through the growth's index maps, scaled per copy (`expansion.operators.carry_tensor`), and trains
        with `training.optim.GrownAdamW` so fresh coordinates start as a fresh AdamW's.
    apollo_sampler (`dict`, *optional*): the fields of a `training.apollo.DepthSampler`: each optimizer step runs
        the decoder at the virtual depth it draws for that step, over shared layers (Apollo). None: own depth.
    flops_per_added_layer (`float`, defaults to `0.0`): training FLOPs per token of each virtual layer beyond the
        model's own depth (the ledger counts the depth each step ran).

    Defaults that differ from `TrainingArguments`: `train_sampling_strategy="sequential"` (each stage reads exactly
    its token window, in order), `lr_scheduler_type="cosine_with_min_lr"`, `save_strategy="steps"`,
    `report_to="none"`, `logging_first_step=True`, and `lr_scheduler_kwargs={"min_lr_rate": 0.1}` unless set.
    """

    stage_index: int = field(default=0, metadata={"help": "Position of the member in the family."})
    tokens_per_step: int = field(default=0, metadata={"help": "Tokens per optimizer step across all processes."})
    flops_per_token: float = field(default=0.0, metadata={"help": "Training FLOPs per token of this member."})
    tokens_before_stage: int = field(default=0, metadata={"help": "Tokens the family consumed before this stage."})
    flops_before_stage: float = field(default=0.0, metadata={"help": "FLOPs the family spent before this stage."})
    optimizer_at_growth: str = field(default="reset", metadata={"help": "reset or carry (AdamW moments)."})
    apollo_sampler: dict | str | None = field(default=None, metadata={"help": "Apollo's DepthSampler fields."})
    flops_per_added_layer: float = field(default=0.0, metadata={"help": "FLOPs per token of a virtual layer."})
    train_sampling_strategy: str = field(default="sequential", metadata={"help": "Sampler for training."})
    lr_scheduler_type: str = field(default="cosine_with_min_lr", metadata={"help": "Per-stage LR schedule."})
    save_strategy: str = field(default="steps", metadata={"help": "Checkpoint every save_steps (for resume)."})
    report_to: str | list[str] = field(default="none", metadata={"help": "tensorboard, wandb, ... or none."})
    logging_first_step: bool = field(default=True, metadata={"help": "Log the loss of the very first step."})

    def __post_init__(self):
        super().__post_init__()
        kwargs = self.lr_scheduler_kwargs if isinstance(self.lr_scheduler_kwargs, dict) else {}
        if self.lr_scheduler_type == "cosine_with_min_lr" and not {"min_lr", "min_lr_rate"} & set(kwargs):
            self.lr_scheduler_kwargs = {**kwargs, "min_lr_rate": 0.1}  # cosine to 10% of the max LR
        if self.optimizer_at_growth not in ("reset", "carry"):
            raise ValueError(f"optimizer_at_growth={self.optimizer_at_growth!r}: choose 'reset' or 'carry'.")


class ProgressiveTrainer(Trainer):
    r"""
    A [`~transformers.Trainer`] for one stage of a family: every log line carries `stage`, `tokens` and
    `cumulative_flops`, and with `carried_optimizer_state` the AdamW moments of the parent are loaded into the fresh
    optimizer (a later checkpoint resume overrides them, as it should).

    Example (a tiny stage on random tokens):

    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_progressive import ProgressiveTrainer, ProgressiveTrainingArguments
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=37,
    ...                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    >>> blocks = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 99, (8, 16))]
    >>> args = ProgressiveTrainingArguments("out/stage0", max_steps=2, per_device_train_batch_size=4,
    ...                                     tokens_per_step=64, flops_per_token=6 * 20_000, use_cpu=True)
    >>> ProgressiveTrainer(model=model, args=args, train_dataset=blocks).train().global_step
    2
    ```
    """

    def __init__(self, *args, carried_optimizer_state: dict[str, dict] | None = None, **kwargs):
        self.carried_optimizer_state = carried_optimizer_state
        super().__init__(*args, **kwargs)
        sampler = self.args.apollo_sampler
        self.depths = DepthSampler(**json.loads(sampler) if isinstance(sampler, str) else sampler) if sampler else None
        self._added = (0, 0)  # (step, virtual layers added before it): the ledger's running sum

    def training_step(self, model, inputs, num_items_in_batch=None):
        """One micro-batch; with Apollo, at the virtual depth drawn for this optimizer step (every micro-batch of a
        step, and every process, draws the same one: it is keyed by the step)."""
        if self.depths is None:
            return super().training_step(model, inputs, num_items_in_batch)
        with virtual_depth(model, self.depths.depth(self.state.global_step)):
            return super().training_step(model, inputs, num_items_in_batch)

    def virtual_layers(self, step: int) -> int:
        """Layers run beyond the model's own depth (Apollo) in this stage's first `step` optimizer steps: a running
        sum, so the log lines of a long stage do not redraw every earlier step."""
        if self.depths is None:
            return 0
        last, added = self._added if self._added[0] <= step else (0, 0)
        self._added = (step, added + self.depths.added_layers(last, step))
        return self._added[1]

    def virtual_flops(self, step: int) -> float:
        """FLOPs of the virtual layers (Apollo) run in this stage's first `step` optimizer steps."""
        return self.virtual_layers(step) * self.args.flops_per_added_layer * self.args.tokens_per_step

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.carried_optimizer_state and self.optimizer is None:
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model if model is None else model)
            if cls is not torch.optim.AdamW:
                raise ValueError(
                    f"optimizer_at_growth='carry' maps AdamW moments; optim={self.args.optim!r} is not AdamW."
                )
            self.optimizer_cls_and_kwargs = (GrownAdamW, kwargs)  # fresh entries bias-corrected by their own age
        optimizer = super().create_optimizer(model)
        if self.carried_optimizer_state:
            loaded = load_optimizer_state(
                optimizer, self.model if model is None else model, self.carried_optimizer_state
            )
            logger.info(f"stage {self.args.stage_index}: carried AdamW moments into {loaded} parameters")
        return optimizer

    def _save_checkpoint(self, model, trial) -> None:
        # torch.save reports a full disk as a RuntimeError: surface it as the OSError it is
        with storage_errors(f"a checkpoint in {self.args.output_dir}"):
            super()._save_checkpoint(model, trial)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        step, args = self.state.global_step, self.args
        logs = {**logs, "stage": args.stage_index}
        if args.tokens_per_step:
            logs["tokens"] = args.tokens_before_stage + step * args.tokens_per_step
            own = step * args.tokens_per_step * args.flops_per_token
            logs["cumulative_flops"] = args.flops_before_stage + own + self.virtual_flops(step)
        super().log(logs, start_time)


class StageClock(TrainerCallback):
    """Wall time of a stage across attempts: time up to the checkpoint a run resumes from, plus this run's."""

    def __init__(self, file: Path):
        self.file, self.prior, self.t0 = file, 0.0, time.time()

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


def optimizer_state_by_name(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, dict]:
    """AdamW state keyed by parameter name (moments on CPU), so it can follow the weights through a growth."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    names = {id(param): name for name, param in model.named_parameters()}
    state = {}
    for param, values in inner.state.items():
        if id(param) in names and "exp_avg" in values:
            state[names[id(param)]] = {k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in values.items()}
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module, state: dict[str, dict]) -> int:
    """Fill `optimizer`'s per-parameter state from `state` (keyed by name); returns how many parameters got one."""
    inner = getattr(optimizer, "optimizer", optimizer)
    loaded = 0
    for name, param in model.named_parameters():
        if name in state and param.requires_grad:  # frozen parameters get no optimizer state
            inner.state[param] = {k: (v.to(param.device) if torch.is_tensor(v) else v) for k, v in state[name].items()}
            loaded += 1
    return loaded


__all__ = [
    "StageClock",
    "ProgressiveTrainer",
    "ProgressiveTrainingArguments",
    "load_optimizer_state",
    "optimizer_state_by_name",
    "process_state",
]
