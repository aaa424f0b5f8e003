"""Update consistency and eval results on already-published members (the script form of
`hf-progressive push-metrics`): re-render each member's card (model-index, KL to its neighbours) and upload it with
eval_results.json and consistency.json, one commit per repo, skipped when that exact content is already there.

    hf-progressive evaluate out/tiny && hf-progressive consistency out/tiny
    python hub_scripts/push_metrics.py out/tiny --namespace my-org [--dry-run]"""

import sys

from hf_progressive.cli import main as cli


def main(argv=None) -> int:
    return cli(["push-metrics", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
