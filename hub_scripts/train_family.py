"""Build a model family from a recipe (the script form of `hf-progressive build-family`), e.g. data-parallel:

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 hub_scripts/train_family.py \\
        --recipe tiny --out out/tiny --max-steps-per-stage 20
    accelerate launch --config_file hub_scripts/accelerate/ddp.yaml hub_scripts/train_family.py --recipe tiny --out out

With a pip-installed package, `accelerate launch ... -m hf_progressive build-family tiny --out out` is the same.
Rerunning the same command resumes (finished members are skipped, the current stage continues from its last
checkpoint)."""

import sys

from hf_progressive.cli import main


if __name__ == "__main__":
    sys.exit(main(["build-family", *sys.argv[1:]]))
