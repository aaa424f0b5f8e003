"""What users get is the wheel: build it from this tree (no `-e`), check it holds every file the package opens at run
time, install it into a fresh virtual environment and use it there (evaluate a family, render its cards)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from hf_progressive.analysis import evaluation
from hf_progressive.data import documents
from hf_progressive.family import recipe
from hf_progressive.hub import cards


ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "hf_progressive"
# the folders the library reads at run time, each named by the constant its owner reads them through
RUNTIME_DIRS = {
    "lm-eval tasks (evaluation.TASKS_DIR)": evaluation.TASKS_DIR,
    "card templates (cards.TEMPLATES_DIR)": cards.TEMPLATES_DIR,
    "embedded corpus (documents.CORPUS_DIR)": documents.CORPUS_DIR,
    "recipes (recipe.RECIPES_DIR)": recipe.RECIPES_DIR,
}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel` builds from a copy of the source tree (the checkout itself stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    result = subprocess.run([*command, "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = (tmp / "dist").glob("hf_progressive-*.whl")
    return built


def _source_files(folder: Path) -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_wheel_holds_every_file_the_package_opens(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for label, folder in RUNTIME_DIRS.items():
        assert folder.resolve().is_relative_to(PACKAGE.resolve()), f"{label}: {folder} is outside the package"
        files = _source_files(folder)
        assert files, f"{label}: {folder} holds no files"
        assert files <= names, f"{label}: missing from the wheel: {sorted(files - names)}"
    missing = _source_files(PACKAGE) - names
    assert not missing, f"package files missing from the wheel: {sorted(missing)}"
    assert not [n for n in names if n.startswith(("tests/", "bench/", "hub_scripts/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "hf-progressive = hf_progressive.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; it sees the already-installed dependencies through a .pth line (added
    after the install, so pip never sees, or touches, the development install)."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    result = subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "dependencies.pth").write_text("\n".join(sorted(paths)) + "\n")
    return env


def _run(env: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    clean.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=cwd, env=clean)


def test_installed_wheel_evaluates_a_family_and_renders_its_cards(installed, tiny_family, tmp_path):
    out = tmp_path / "family"
    shutil.copytree(tiny_family[0], out)
    where = _run(
        installed,
        str(installed / "bin" / "python"),
        "-c",
        "import hf_progressive as h; print(h.__file__)",
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout + where.stderr  # the wheel, not the tree
    cli = str(installed / "bin" / "hf-progressive")
    evaluated = _run(
        installed, cli, "evaluate", str(out), "--tasks", "hfp_gutenberg_cloze", "--limit", "2", cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "gutenberg_cloze:acc" in evaluated.stdout and (out / "eval_results.json").is_file()
    pushed = _run(installed, cli, "push", str(out), "--namespace", "org", "--prefix", "fam", "--dry-run", cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    names = list(tiny_family[1].members)
    card = (out / "hub_upload" / f"fam-{names[1]}" / "README.md").read_text()
    assert f"base_model: org/fam-{names[0]}" in card and "hfp_gutenberg_cloze" in card
    assert "x 32" in card and "Tokenizer: byte-level BPE" in card  # batch x seq_len and tokenizer from the ledger
    assert "org/fam-" in (out / "hub_upload" / "fam-family" / "README.md").read_text()
