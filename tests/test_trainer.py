"""ProgressiveTrainingArguments / ProgressiveTrainer on their own: defaults, ledger fields in logs, optimizer state
by name (the carry path)."""

import pytest
import torch
from testing_utils import tiny_model

from hf_progressive.training.trainer import (
    ProgressiveTrainer,
    ProgressiveTrainingArguments,
    load_optimizer_state,
    optimizer_state_by_name,
)


def _args(tmp_path, **kwargs):
    return ProgressiveTrainingArguments(
        str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        use_cpu=True,
        logging_steps=1,
        tokens_per_step=4 * 16,
        flops_per_token=100.0,
        **kwargs,
    )


def _blocks():
    return [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 99, (8, 16))]


def test_defaults_differ_where_documented(tmp_path):
    args = _args(tmp_path)
    assert args.train_sampling_strategy == "sequential" and args.lr_scheduler_type == "cosine_with_min_lr"
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1} and args.report_to in ("none", [], ["none"])
    with pytest.raises(ValueError, match="optimizer_at_growth='keep'"):
        _args(tmp_path, optimizer_at_growth="keep")


def test_logs_carry_stage_tokens_and_flops(tmp_path):
    trainer = ProgressiveTrainer(
        model=tiny_model(),
        args=_args(tmp_path, stage_index=3, tokens_before_stage=1000, flops_before_stage=5.0),
        train_dataset=_blocks(),
    )
    trainer.train()
    first = trainer.state.log_history[0]
    assert first["stage"] == 3 and first["tokens"] == 1000 + 64 and first["cumulative_flops"] == 5.0 + 64 * 100.0


def test_optimizer_state_round_trips_by_name(tmp_path):
    model = tiny_model()
    trainer = ProgressiveTrainer(model=model, args=_args(tmp_path), train_dataset=_blocks())
    trainer.train()
    state = optimizer_state_by_name(trainer.optimizer, model)
    assert set(state) == {name for name, _ in model.named_parameters()}
    fresh = torch.optim.AdamW(model.parameters())
    assert load_optimizer_state(fresh, model, state) == len(state)
    name = "model.layers.0.mlp.up_proj.weight"
    param = dict(model.named_parameters())[name]
    assert torch.equal(fresh.state[param]["exp_avg"], state[name]["exp_avg"])


def test_carried_state_is_loaded_into_the_new_optimizer(tmp_path):
    model = tiny_model()
    carried = {
        name: {"step": torch.tensor(7.0), "exp_avg": torch.full_like(p, 0.5), "exp_avg_sq": torch.ones_like(p)}
        for name, p in model.named_parameters()
    }
    trainer = ProgressiveTrainer(
        model=model, args=_args(tmp_path), train_dataset=_blocks(), carried_optimizer_state=carried
    )
    optimizer = trainer.create_optimizer()
    param = next(model.parameters())
    assert optimizer.state[param]["step"].item() == 7.0 and torch.all(optimizer.state[param]["exp_avg"] == 0.5)
