"""The family folder and its ledger: the one place that knows where things live in OUT and what family.json holds.

`FamilyPaths(out)` names every file and folder of a family (members, stages, data, derived results, Hub staging);
no other module spells a file name of OUT. `Ledger` and `MemberRecord` are the typed records of family.json, with a
schema version: `Ledger.read(out)` refuses, in one line, a ledger written by an incompatible version.

    OUT/
      family.json                  Ledger: recipe identity, training set-up, one MemberRecord per finished member
      members/<name>/              vanilla checkpoint + growth.json, training_log.json, eval_results.json
      stages/<name>/               Trainer checkpoints, clock.json, optimizer_final.pt (for `carry`), trunk/ (the
                                   model before its decay branch, with lr.across_stages: trunk)
      data/                        the token store (token_store.py) built here when none is given
      consistency.json, eval_results.json, report.md, *.png    derived results
      hub_upload/, hub_metrics/    exactly what a push uploads (staged by `hf-progressive push`)
"""

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, RecipeError
from ..expansion.record import GROWTH_FILE
from ..utils.coerce import coerce
from ..utils.guard import exclusive, is_own_temp
from ..utils.io import write_json


SCHEMA_VERSION = 2  # 1: the untyped ledger of hf_progressive <= 0.1 (no schema_version field)
LEDGER_FILE = "family.json"
TRAINING_LOG_FILE = "training_log.json"
EVAL_FILE = "eval_results.json"  # per member, and the family table at OUT/
CONSISTENCY_FILE = "consistency.json"
REPORT_FILE = "report.md"


@dataclass(frozen=True)
class FamilyPaths:
    """Where everything of the family in `root` lives."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    ledger = property(lambda self: self.root / LEDGER_FILE)
    members = property(lambda self: self.root / "members")
    stages = property(lambda self: self.root / "stages")
    data = property(lambda self: self.root / "data")  # the token store build-family makes when given none
    consistency = property(lambda self: self.root / CONSISTENCY_FILE)
    eval_results = property(lambda self: self.root / EVAL_FILE)
    report = property(lambda self: self.root / REPORT_FILE)
    hub_upload = property(lambda self: self.root / "hub_upload")
    hub_metrics = property(lambda self: self.root / "hub_metrics")

    def member(self, name: str) -> Path:
        return self.members / name

    def growth(self, name: str) -> Path:
        return self.member(name) / GROWTH_FILE

    def training_log(self, name: str) -> Path:
        return self.member(name) / TRAINING_LOG_FILE

    def member_eval(self, name: str) -> Path:
        return self.member(name) / EVAL_FILE

    def stage(self, name: str) -> Path:
        return self.stages / name

    def grown(self, name: str) -> Path:
        """Member `name` right after its growth, before its stage trains (streamed there once by the main process)."""
        return self.stage(name) / "grown"

    def optimizer_final(self, name: str) -> Path:
        """The AdamW moments at the end of stage `name`, by parameter name (`optimizer.at_growth: carry`)."""
        return self.stage(name) / "optimizer_final.pt"

    def trunk(self, name: str) -> Path:
        """Member `name`'s trunk (`lr.across_stages: trunk`): the model before its decay branch, which the next
        member grows from, with `trunk_optimizer` and `trunk_record` beside its weights."""
        return self.stage(name) / "trunk"

    def trunk_optimizer(self, name: str) -> Path:
        return self.trunk(name) / "optimizer.pt"

    def trunk_record(self, name: str) -> Path:
        """The trunk's step and its loss on the next stage's first batch."""
        return self.trunk(name) / "trunk.json"

    def clock(self, name: str) -> Path:
        """Wall time of stage `name` at each of its Trainer checkpoints (resumed stages keep counting)."""
        return self.stage(name) / "clock.json"

    def plots(self) -> list[Path]:
        return sorted(self.root.glob("*.png"))

    def store(self, ledger: "Ledger") -> Path:
        """The token store the family was trained on (recorded relative to OUT when it lies inside)."""
        return self.root / ledger.data.get("store", "data")

    def relative(self, path: Path) -> str:
        """`path` relative to OUT when it lies inside (the family folder can move), else absolute."""
        path, root = Path(path).resolve(), self.root.resolve()
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    def is_saved(self, name: str) -> bool:
        """Whether member `name` was written to the end (member folders appear by an atomic rename)."""
        return (self.member(name) / "config.json").is_file()


@dataclass
class MemberRecord:
    """One finished member, as the ledger records it."""

    index: int
    parent: str | None
    method: str | None
    sizes: dict  # hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads
    params: dict  # total, non_embedding, matmul (budget.parameter_counts)
    steps: int
    tokens: int
    data_passes: float  # > 1: the stage read past the end of the corpus and repeated data
    max_lr: float
    flops_independent: float  # cost of training this member alone on its full budget
    wall_time_s: float
    world_size: int
    first_step_loss: float | None
    final_train_loss: float | None
    val_loss: float
    boundary_loss: float | None  # loss on the next stage's first batch (None for the last member)
    train_inherited: str  # full | frozen | lora
    trainable_params: int
    optimizer_state_bytes: int
    flops_per_token: float
    flops_stage: float
    flops_cumulative: float = 0.0  # along the build order; set by `Ledger.add`
    source: str | None = None  # the checkpoint a pretrained first member (`from:`) came from
    branch_steps: int = 0  # of `steps`, those of the decay branch (lr.across_stages: trunk)
    virtual_layers: int = 0  # Apollo: layers run beyond the member's own depth, summed over its steps


@dataclass
class Ledger:
    """family.json: what was built (recipe identity), how (training set-up the cards need), and each member."""

    recipe: str
    mode: str
    recipe_text: str | None
    max_steps: int | None  # stages capped (a smoke run): savings then mean nothing
    batch_size: int  # global sequences per optimizer step
    seq_len: int
    tokenizer: str  # a tokenizer path/id, or "byte-level BPE trained on the corpus (vocab N)"
    data: dict  # the token store's data request (sources, text field, shuffle, holdout) and `store` (relative to OUT)
    members_planned: int
    members: dict[str, MemberRecord] = field(default_factory=dict)
    tokenizer_hash: str | None = None  # the token store's tokenizer (folder_hash), fixed at the first stage
    schema_version: int = SCHEMA_VERSION

    IDENTITY = ("recipe", "mode", "recipe_text", "max_steps")  # what must match to resume into the same OUT

    @classmethod
    def for_plan(cls, plan, max_steps: int | None) -> "Ledger":
        """An empty ledger for `plan` (a `family.FamilyPlan`)."""
        recipe = plan.recipe
        spec = recipe.tokenizer
        tokenizer = spec.path or f"byte-level BPE trained on the corpus (vocab {recipe.vocab_size})"
        return cls(
            recipe=recipe.name,
            mode=plan.mode,
            recipe_text=recipe.text,
            max_steps=max_steps,
            batch_size=recipe.batch_size,
            seq_len=recipe.seq_len,
            tokenizer=tokenizer,
            data={
                "train": recipe.data.train,
                "validation": recipe.data.validation,
                "text_field": recipe.data.text_field,
            },
            members_planned=len(plan.members),
        )

    def add(self, name: str, record: MemberRecord) -> None:
        """Record a finished member; cumulative FLOPs follow the build order."""
        self.members[name] = record
        cumulative = 0.0
        for member in self.members.values():
            cumulative += member.flops_stage
            member.flops_cumulative = cumulative

    @property
    def totals(self) -> dict:
        records = list(self.members.values())
        flops = sum(r.flops_stage for r in records)
        independent = sum(r.flops_independent for r in records)
        return {
            "flops": flops,
            "flops_independent": independent,
            "tokens": sum(r.tokens for r in records),
            "wall_time_s": round(sum(r.wall_time_s for r in records), 2),
            "members_done": len(records),
            "members_planned": self.members_planned,
            "saving": 1 - flops / independent if independent else 0.0,
        }

    def fix_tokenizer(self, digest: str, store: str | os.PathLike) -> None:
        """Every member of a family shares one tokenizer: the hash of the token store's tokenizer is recorded at the
        first stage, and a later store of another tokenizer (e.g. a BPE learnt on another corpus) is refused."""
        if self.tokenizer_hash not in (None, digest):
            raise CheckpointError(
                f"{store}: its tokenizer (sha256 {digest[:12]}) is not the one this family was built with "
                f"({self.tokenizer_hash[:12]}); every member shares one tokenizer: use the token store the family "
                "started with, or a new --out."
            )
        self.tokenizer_hash = digest

    def identity_mismatch(self, other: "Ledger") -> str | None:
        """The first identity field on which `other` differs, or None."""
        return next((key for key in self.IDENTITY if getattr(self, key) != getattr(other, key)), None)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        return {"schema_version": data.pop("schema_version"), **data, "totals": self.totals}

    @classmethod
    def from_json(cls, data: dict, where: str | os.PathLike = LEDGER_FILE) -> "Ledger":
        version = data.get("schema_version", 1) if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise CheckpointError(
                f"{where}: ledger schema {version}, but this hf_progressive reads schema {SCHEMA_VERSION}; rebuild "
                "the family into a new --out, or read it with the version that wrote it."
            )
        data = {k: v for k, v in data.items() if k != "totals"}
        try:
            members = {
                name: _typed(MemberRecord, record, f"members.{name}") for name, record in data.pop("members").items()
            }
            return _typed(cls, {**data, "members": members}, "")
        except (TypeError, KeyError, AttributeError, RecipeError) as error:
            raise CheckpointError(
                f"{where}: not a valid ledger ({error}); restore it or rebuild the family."
            ) from None

    @classmethod
    def read(cls, out: str | os.PathLike) -> "Ledger":
        """The ledger of the family in `out`; one-line `CheckpointError` if there is none or it cannot be used."""
        path = FamilyPaths(out).ledger
        if not path.is_file():
            raise CheckpointError(f"{out}: no {LEDGER_FILE}; pass a directory written by hf-progressive build-family.")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path}: not valid JSON ({error}); rebuild the family.") from None
        return cls.from_json(data, path)

    def write(self, out: str | os.PathLike) -> None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(FamilyPaths(out).ledger, self.to_json())


def _typed(cls, data: dict, where: str):
    """`cls(**data)` with every field checked against its annotation (`coerce.coerce`; losses may be inf or nan):
    a hand-edited `val_loss: "abc"` is refused on read, not met as a traceback in a reader."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise RecipeError(f"{where + '.' if where else ''}{unknown[0]}: not a ledger field")
    values = {
        key: value if key == "members" else coerce(value, hints[key], f"{where + '.' if where else ''}{key}", False)
        for key, value in data.items()
    }
    return cls(**values)


def check_member(paths: FamilyPaths, name: str) -> None:
    """Refuse, in one line, a member the ledger lists whose folder is missing, whose weights are damaged (truncated,
    or not of its own config: another member's copied in) or whose training log is gone (the report reads it)."""
    from ..expansion.checkpoint import check_weights

    folder = paths.member(name)
    if not folder.is_dir():
        raise CheckpointError(
            f"member {name} is in {paths.ledger.name} but its folder {folder} is missing; rerun build-family with "
            f"--out {paths.root} to rebuild it."
        )
    try:
        check_weights(folder)
        if not paths.training_log(name).exists():
            raise CheckpointError(f"{folder}: {TRAINING_LOG_FILE} missing")
    except CheckpointError as error:
        problem = str(error).removeprefix(f"{folder}: ").split("; ")[0]
        raise CheckpointError(
            f"member {name} is damaged ({problem}); delete {folder} and rerun build-family with --out {paths.root} "
            "to rebuild it."
        ) from None


def read_family(out: str | os.PathLike) -> Ledger:
    """The ledger of the built family in `out`, with every member it lists checked whole (`check_member`): what the
    readers (report, consistency, evaluate, push) start from."""
    ledger = Ledger.read(out)
    for name in ledger.members:
        check_member(FamilyPaths(out), name)
    return ledger


def is_family(out: str | os.PathLike) -> bool:
    return FamilyPaths(out).ledger.is_file()


def covers(result: dict | None, ledger: Ledger) -> bool:
    """Whether a derived result (consistency.json, eval_results.json: both list their `members`) was computed on
    exactly the ledger's members; a family that grew since must recompute it."""
    return isinstance(result, dict) and list(result.get("members") or []) == list(ledger.members)


def check_out(out: str | os.PathLike) -> None:
    """OUT must be absent, an empty folder, or a family (holding family.json): a build never writes its members,
    stages and data into a folder of other files (`/`, a home directory, a project)."""
    if not str(out).strip():
        raise CheckpointError("--out '': give the folder the family is built in, e.g. --out out/tiny.")
    root = Path(out)
    if root.is_dir() and not is_family(root):
        paths = FamilyPaths(root)
        others = sorted(p.name for p in root.iterdir() if not (_is_own_store(paths, p) or is_own_temp(p)))
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise CheckpointError(
                f"{root}: holds {len(others)} entries that are not a family ({shown}); build into a new or empty "
                "folder, or into a family of this recipe to resume it."
            )


def _is_own_store(paths: FamilyPaths, path: Path) -> bool:
    """OUT/data holding a token store (it carries its own identity, checked before use, so it may come first), or
    still empty (a preparation killed while it held the store's lock)."""
    from ..data.token_store import is_store_folder

    return path == paths.data and path.is_dir() and (is_store_folder(path) or not any(path.iterdir()))


def build_lock(out: str | os.PathLike):
    """One builder per OUT at a time (`guard.exclusive` on the OUT folder for the whole build)."""
    busy = "another build-family is running on this folder; wait for it to finish, or build into another --out."
    return exclusive(out, busy)


__all__ = [
    "CONSISTENCY_FILE",
    "EVAL_FILE",
    "LEDGER_FILE",
    "REPORT_FILE",
    "SCHEMA_VERSION",
    "TRAINING_LOG_FILE",
    "FamilyPaths",
    "Ledger",
    "MemberRecord",
    "build_lock",
    "check_member",
    "check_out",
    "covers",
    "is_family",
    "read_family",
]
