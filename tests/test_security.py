"""Security: weights are read from safetensors only, every torch.load is weights_only=True, remote code is never
trusted (checked on the source tree), and a Hub token never reaches logs, cards, ledgers or exceptions (checked by
grepping everything a run writes and prints, with a fake token set)."""

import ast
import sys
import traceback
from pathlib import Path

import pytest
from hub_mock import FakeHub
from testing_utils import tiny_recipe

from hf_progressive.cli import main
from hf_progressive.hub import publish


ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("hf_progressive/**/*.py"), *ROOT.glob("hub_scripts/*.py"), *ROOT.glob("bench/*.py")])
TOKEN = "hf_FAKEtokenNEVERtoBEprinted0123456789"


def violations(source: str) -> list[str]:
    """Unsafe calls in Python `source`: torch.load without weights_only=True, pickle-family loads, and any
    trust_remote_code keyword (hf_progressive never sets it, to any value)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func, keywords = node.func, {kw.arg: kw.value for kw in node.keywords}
        owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if owner == "torch" and name == "load":
            value = keywords.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                found.append(f"{node.lineno}: torch.load without weights_only=True")
        if owner in ("pickle", "dill", "cloudpickle") and name in ("load", "loads"):
            found.append(f"{node.lineno}: {owner}.{name}")
        if "trust_remote_code" in keywords:
            found.append(f"{node.lineno}: trust_remote_code")
    return found


@pytest.mark.parametrize(
    "source, count",
    [
        ("torch.load(f, weights_only=True)", 0),
        ("torch.load(f)", 1),
        ("torch.load(f, weights_only=False)", 1),
        ("pickle.loads(b)", 1),
        ("AutoModel.from_pretrained(x, trust_remote_code=True)", 1),
        ("AutoModel.from_pretrained(x, trust_remote_code=False)", 1),
        ("json.loads(s); load_file(p)", 0),
    ],
)
def test_the_scanner_flags_unsafe_calls(source, count):
    assert len(violations(source)) == count


def test_the_scan_sees_the_sources():
    assert len(SOURCES) > 30 and any(path.name == "builder.py" for path in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_deserialisation_and_no_remote_code(path):
    assert violations(path.read_text()) == []


def _texts(folder: Path):
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".md", ".yaml", ".txt", ".log", ".jinja", ""}:
            yield path, path.read_text(errors="ignore")


def test_token_never_reaches_outputs_of_a_build(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "out"
    assert (
        main(
            ["build-family", "--recipe", tiny_recipe(tmp_path).source, "--out", str(out), "--max-steps-per-stage", "1"]
        )
        == 0
    )
    printed = capfd.readouterr()
    assert TOKEN not in printed.out + printed.err
    leaks = [str(path) for path, text in _texts(out) if TOKEN in text]
    assert not leaks and (out / "family.json").is_file() and (out / "report.md").is_file()


def test_token_never_reaches_cards_or_exceptions_of_a_failed_push(tiny_family, monkeypatch, capfd):
    sys.path.insert(0, str(ROOT / "hub_scripts"))
    import push_family

    out, _ = tiny_family
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub() as hub:
        hub.fail = ("POST", "/commit")  # the first upload fails
        with pytest.raises(Exception) as raised:  # the library raises the Hub's error ...
            list(publish.push_family(out, "org", "sec", endpoint=hub.url))
        assert any(TOKEN in str(headers) for headers in hub.headers), "the fake Hub never saw the token: test is void"
        # ... and the script prints it as one line, exit 1 (the next upload fails too)
        hub.fail = ("POST", "/commit")
        assert push_family.main([str(out), "--namespace", "org", "--prefix", "sec", "--endpoint", hub.url]) == 1
    shown = "".join(traceback.format_exception(raised.value))
    assert TOKEN not in shown and TOKEN not in repr(raised.value.args)
    printed = capfd.readouterr()
    assert TOKEN not in printed.out + printed.err
    assert not [str(path) for path, text in _texts(out) if TOKEN in text]
