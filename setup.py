"""Packaging for hf_progressive. The version is defined once, in hf_progressive/__init__.py."""

import re
from pathlib import Path

from setuptools import find_packages, setup


VERSION = re.search(r'__version__ = "([^"]+)"', Path("hf_progressive/__init__.py").read_text()).group(1)

install_requires = [
    "torch>=2.4,<3",  # a range: the CPU wheel 2.13 (or a CUDA build the user already has) satisfies it
    "transformers>=5.23,<6",  # v5 config dataclasses; tested on 5.23
    "accelerate>=1.10",
    "datasets>=4.0",
    "peft>=0.17",
    "evaluate>=0.4",
    "safetensors>=0.5",
    "huggingface_hub>=1.0",
    "pyyaml>=6.0",
    "tqdm>=4.66",
    "matplotlib>=3.7",  # the family report's plots
]
extras = {
    "eval": ["lm_eval>=0.4.8"],
    "test": ["pytest>=8", "pytest-xdist>=3.5", "lm_eval>=0.4.8", "pandas"],  # lm_eval: the offline tasks run in CI
}
extras["dev"] = extras["test"] + extras["eval"] + ["ruff>=0.6", "pre-commit>=3"]

setup(
    name="hf_progressive",
    version=VERSION,
    description="Build a family of Llama models for about the price of its largest member (progressive training "
    "with model expansion).",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["hf_progressive", "hf_progressive.*"]),
    # everything the package reads at run time (tests/test_packaging.py checks the built wheel holds it all)
    package_data={
        "hf_progressive.family": ["recipes/*.yaml"],
        "hf_progressive.data": ["corpus/*"],
        "hf_progressive.analysis": ["lm_eval_tasks/*.yaml", "lm_eval_tasks/*.py"],
        "hf_progressive.hub": ["model_cards/*.md"],
    },
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
    entry_points={"console_scripts": ["hf-progressive=hf_progressive.cli:main"]},
)
