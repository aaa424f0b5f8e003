"""Benchmark: training tokens per second of ProgressiveTrainer against a plain transformers Trainer and a minimal
hand-written PyTorch loop, in one process, on the same model, packed data (no padding) and batch.

All three use SDPA attention, fused AdamW (torch's `fused=True`, the Trainer's default `adamw_torch_fused`), the
same LR schedule family, sequential batches, no checkpointing and no evaluation; bf16 autocast on a GPU. Rounds
alternate the three loops, rotating which goes first, so that drift in the machine hits them equally; the table
reports the median round.

    python bench/throughput.py                 # ~5 minutes on 2 CPU cores
    python bench/throughput.py --rounds 5 --steps 60 --hidden-size 256 --layers 8"""

import argparse
import math
import statistics
import tempfile
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from hf_progressive.training.trainer import ProgressiveTrainer, ProgressiveTrainingArguments


class StepClock(TrainerCallback):
    """Wall time from the end of step `warmup` to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_model(args, device: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        intermediate_size=round(8 / 3 * args.hidden_size / 8) * 8,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden_size // 32,
        num_key_value_heads=args.hidden_size // 32,
        head_dim=32,
        max_position_embeddings=args.seq_len,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).to(device)


def trainer_loop(kind: str, args, blocks: list[dict], steps: int) -> float:
    """Seconds for `steps - warmup` steps of a (Progressive)Trainer."""
    model, clock = make_model(args, _device()), StepClock(args.warmup)
    common = dict(
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-3,
        weight_decay=0.1,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=2,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        train_sampling_strategy="sequential",
        bf16=_bf16(),
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    with tempfile.TemporaryDirectory() as out:
        if kind == "progressive":
            tokens_per_step = args.batch_size * args.seq_len
            training_args = ProgressiveTrainingArguments(
                out, tokens_per_step=tokens_per_step, flops_per_token=6.0 * model.num_parameters(), **common
            )
            trainer = ProgressiveTrainer(model=model, args=training_args, train_dataset=blocks, callbacks=[clock])
        else:
            training_args = TrainingArguments(out, **common)
            trainer = Trainer(model=model, args=training_args, train_dataset=blocks, callbacks=[clock])
        trainer.remove_callback(PrinterCallback)  # logs are still made every 10 steps, just not printed
        trainer.train()
    return clock.end - clock.start


def hand_loop(args, blocks: list[dict], steps: int) -> float:
    """The same work written by hand: fused AdamW, cosine-to-10% schedule, grad clipping at 1.0."""
    device = _device()
    model = make_model(args, device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-3, fused=True
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 2) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / steps)))
    )
    ids = torch.stack([b["input_ids"] for b in blocks])
    model.train()
    start = None
    for step in range(steps):
        batch = ids[(step * args.batch_size) % len(ids) :][: args.batch_size].to(device)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=_bf16()):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step + 1 == args.warmup:
            _sync()
            start = time.perf_counter()
    _sync()
    return time.perf_counter() - start


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=80, help="steps per loop, the first --warmup untimed")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    generator = torch.Generator().manual_seed(0)
    n_blocks = args.steps * args.batch_size
    ids = torch.randint(0, args.vocab_size, (n_blocks, args.seq_len), generator=generator)
    blocks = [{"input_ids": row, "labels": row} for row in ids]  # packed: every token is a real token
    timed_tokens = (args.steps - args.warmup) * args.batch_size * args.seq_len
    loops = {
        "hand-written loop": lambda: hand_loop(args, blocks, args.steps),
        "transformers Trainer": lambda: trainer_loop("plain", args, blocks, args.steps),
        "ProgressiveTrainer": lambda: trainer_loop("progressive", args, blocks, args.steps),
    }
    rates = {name: [] for name in loops}
    names = list(loops)
    for round_ in range(args.rounds):
        for name in names[round_ % 3 :] + names[: round_ % 3]:  # rotate who goes first: no loop always runs last
            rates[name].append(timed_tokens / loops[name]())
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {r[-1]:,.0f} tok/s" for n, r in rates.items()), flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    model = make_model(args, "cpu")
    print(
        f"\n{device}; Llama {model.num_parameters() / 1e6:.2f}M params (hidden {args.hidden_size}, {args.layers} "
        f"layers), batch {args.batch_size} x {args.seq_len}, {args.steps - args.warmup} timed steps, "
        f"median of {args.rounds} rounds, bf16={_bf16()}"
    )
    plain = statistics.median(rates["transformers Trainer"])
    print("| loop | tokens/s (median) | min | max | vs Trainer |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {min(values):,.0f} | {max(values):,.0f} | {median / plain:.3f} |")


if __name__ == "__main__":
    main()
