"""Benchmark: the cost of growth.json's record (`streaming_growth_record`) on the 1.1B source of expand_1b.py, for its
depth-only growth (16 -> 24 layers, stack) and its width+depth growth to 2.4B. Plans only: no weights are made.

    python bench/growth_record.py        # a few seconds; prints one Markdown row per growth
"""

import time

from transformers import LlamaConfig

from hf_progressive.expansion.plan import GrowthPlan
from hf_progressive.expansion.record import streaming_growth_record


SOURCE = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
)
GROWTHS = {
    "depth 16 -> 24 (stack)": ({"num_hidden_layers": 24}, "function_preserving+stack"),
    "width+depth to 2.4B": (
        {
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "num_hidden_layers": 24,
            "num_attention_heads": 40,
            "num_key_value_heads": 10,
        },
        "function_preserving+identity",
    ),
}


def main() -> None:
    source = LlamaConfig(**SOURCE)
    print("| growth | record s | parameters new |")
    print("| --- | ---: | ---: |")
    for name, (sizes, method) in GROWTHS.items():
        plan = GrowthPlan.from_configs(source, LlamaConfig(**{**SOURCE, **sizes}), method)
        start = time.perf_counter()
        record = streaming_growth_record("source", plan)
        print(f"| {name} | {time.perf_counter() - start:.3f} | {record['num_parameters']['new']:,} |")


if __name__ == "__main__":
    main()
