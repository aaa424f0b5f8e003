"""growth.json, the record of one growth: where it lies beside a grown checkpoint (`GROWTH_FILE`) and what it holds
(parent, operators, seed, the plan's index maps, each tensor's sources, parameter counts, versions)."""

from .keys import expected_keys, storage_key
from .sizes import parameter_counts


GROWTH_FILE = "growth.json"


def streaming_growth_record(parent: str, plan) -> dict:
    """growth.json without the models in memory (streaming expansion): no preservation report, counts from shapes."""
    import torch
    import transformers

    from .. import __version__
    from .operators import new_entry_count, source_keys  # the tensor side: imported when a growth is recorded

    sources, new = {}, 0
    for key in expected_keys(plan.dst):
        source, donor = source_keys(key, plan)
        sources[key] = {"from": source} | ({"donor": donor} if donor else {})
        new += new_entry_count(key, plan) if storage_key(key, plan.dst) == key else 0
    return {
        "parent": parent,
        "operator": f"{plan.width_method}+{plan.depth_method}",
        "seed": plan.seed,
        "plan": plan.to_json(),
        "num_parameters": {
            "parent": parameter_counts(plan.src)["total"],
            "grown": parameter_counts(plan.dst)["total"],
            "new": new,
        },
        "sources": sources,
        "preservation": None,
        "versions": {
            "hf_progressive": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


__all__ = ["GROWTH_FILE", "streaming_growth_record"]
