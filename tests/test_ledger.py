"""ledger.py: the typed ledger round-trips, refuses incompatible versions in one line, and is the only place in the
library that spells a file name of OUT."""

import ast
import json
import shutil
from pathlib import Path

import pytest

from hf_progressive.cli import main
from hf_progressive.errors import CheckpointError
from hf_progressive.family.ledger import SCHEMA_VERSION, FamilyPaths, Ledger, MemberRecord


PACKAGE = Path(__file__).parents[1] / "hf_progressive"
LEDGER, TOKEN_STORE = PACKAGE / "family" / "ledger.py", PACKAGE / "data" / "token_store.py"
OUT_FILE_NAMES = {
    "family.json",
    "consistency.json",
    "eval_results.json",
    "report.md",
    "training_log.json",
    "optimizer_final.pt",
    "clock.json",
}


def test_ledger_round_trips_through_json(tiny_family):
    out, ledger = tiny_family
    data = json.loads(FamilyPaths(out).ledger.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and Ledger.from_json(data) == ledger
    assert all(isinstance(record, MemberRecord) for record in ledger.members.values())
    assert data["totals"] == ledger.totals  # derived, written for other readers, recomputed on read
    assert (ledger.batch_size, ledger.seq_len) == (4, 32) and ledger.tokenizer.startswith("byte-level BPE")
    assert ledger.data["train"] == "embedded"


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda d: d.pop("schema_version"), "ledger schema 1, but this hf_progressive reads schema 2"),
        (lambda d: d.update(schema_version=99), "ledger schema 99"),
        (lambda d: d["members"][next(iter(d["members"]))].pop("val_loss"), "not a valid ledger"),
        (lambda d: d.update(colour="blue"), "not a valid ledger"),
    ],
    ids=["untyped 0.1 ledger", "newer schema", "record lacks a field", "unknown field"],
)
def test_incompatible_ledgers_are_refused_in_one_line(tiny_family, tmp_path, capsys, change, fragment):
    out = tmp_path / "family"
    shutil.copytree(tiny_family[0], out)
    data = json.loads(FamilyPaths(out).ledger.read_text())
    change(data)
    FamilyPaths(out).ledger.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="family.json: ") as raised:
        Ledger.read(out)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
    before = sorted(p.name for p in out.iterdir())
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_no_ledger_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no family.json; pass a directory written by hf-progressive build"):
        Ledger.read(tmp_path)


def test_family_paths_stay_inside_out(tmp_path):
    paths = FamilyPaths(tmp_path)
    named = [getattr(paths, name) for name in ("ledger", "members", "stages", "data", "consistency", "report")]
    named += [paths.member("m"), paths.training_log("m"), paths.stage("m"), paths.optimizer_final("m")]
    assert all(path.is_relative_to(tmp_path) for path in named) and len(set(named)) == len(named)


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)}


def test_only_the_ledger_module_spells_file_names_of_out():
    offenders = {
        path.name: sorted(OUT_FILE_NAMES & _string_constants(path))
        for path in PACKAGE.rglob("*.py")
        if path != LEDGER and OUT_FILE_NAMES & _string_constants(path)
    }
    assert not offenders, f"file names of OUT spelled outside ledger.py: {offenders}"
    assert OUT_FILE_NAMES <= _string_constants(LEDGER)  # the scan looks for names that exist


def test_only_the_token_store_module_spells_its_file_names():
    names = {"manifest.json", "train.bin", "validation.bin"}
    offenders = [p.name for p in PACKAGE.rglob("*.py") if p != TOKEN_STORE and names & _string_constants(p)]
    assert not offenders and names <= _string_constants(TOKEN_STORE)


def test_modules_and_functions_stay_small():
    """STYLE.md's size budget: files under ~400 lines, functions under ~40 (45 allowed for a long signature)."""
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 45:
                too_long.append(f"{path.name}:{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long
