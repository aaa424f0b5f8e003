"""Benchmark: the cost of growth.json's record (`streaming_growth_record`) on the 1.1B source of expand_1b.py, for its
depth-only growth (16 -> 24 layers, stack) and its width+depth growth to 2.4B. Plans only: no weights are made.

    python bench/growth_record.py        # a few seconds; prints one Markdown row per growth
"""

import time

from expand_1b import SOURCE, TARGET  # the same 1.1B source and 2.4B target (bench/ is on the path when run)
from transformers import LlamaConfig

from hf_progressive.expansion.plan import GrowthPlan
from hf_progressive.expansion.record import streaming_growth_record


GROWTHS = {
    "depth 16 -> 24 (stack)": ({"num_hidden_layers": 24}, "function_preserving+stack"),
    "width+depth to 2.4B": (TARGET, "function_preserving+identity"),
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
