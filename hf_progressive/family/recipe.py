"""Family recipes: typed dataclasses loaded from YAML, validated early with one-line errors that name the field,
the value and the fix. Shipped recipes live in hf_progressive/recipes/*.yaml (`--recipe tiny` finds them)."""

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.spec import HOLDOUT, DataSpec, TokenizerSpec
from ..errors import ExpansionError, RecipeError
from ..expansion.architectures import ARCHITECTURES
from ..expansion.methods import MAX_NOISE_STD, parse_method
from ..utils.coerce import coerce
from .budget import MODES
from .recipe_text import YamlLoader
from .shapes import base_config, member_configs, solve_shape


RECIPES_DIR = Path(__file__).parent / "recipes"
INTERNAL_FIELDS = ("source", "text")  # set by load_recipe, not written in a recipe


@dataclass
class MemberSpec:
    """One member: explicit sizes, or a target parameter count (`params`) solved into a shape; `method` is the
    expansion operator from the previous member (ignored for the first)."""

    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    head_dim: int | None = None  # default: the recipe's head_dim (first member) or the previous member's
    params: float | None = None
    method: str = "function_preserving+identity"
    noise_std: float | None = None  # paired symmetry-breaking noise; default: the operator's methods.DEFAULT_NOISE_STD
    tokens_per_param: float | None = None  # overrides the recipe-wide multiple
    max_lr: float | None = None  # overrides the recipe-wide schedule
    train_inherited: str = "full"  # full | frozen | lora: how layers inherited from the parent train (peft_stage.py)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None  # default: every linear layer of the inherited blocks
    micro_batch_size: int | None = None  # per device; overrides the recipe-wide one
    pretrained: str | None = None  # YAML `from:` (members[0] only): start the family from this Llama checkpoint
    training: dict = field(default_factory=dict)  # TrainingArguments for this stage, over the recipe's


@dataclass
class LRSpec:
    """Max LR per member: listed in the members, or log-linear in parameter count from `smallest` to `largest`,
    or `fixed` for every member. `across_stages: restart`: each stage warms up then decays (cosine, or WSD) to
    `min_lr_ratio` x max. `across_stages: trunk` (staged training): one warm-up, then the family's trunk trains at
    each member's stable max LR across growths (re-warming over `rewarm_ratio` of a stage after each growth); each
    member is released from a decay branch of `branch_ratio` x its stage's steps, forked off the trunk, and the next
    member grows from the trunk, not from the annealed member."""

    smallest: float | None = 1.5e-3
    largest: float | None = 3.0e-4
    fixed: float | None = None
    schedule: str = "cosine"
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    decay_ratio: float = 0.2  # WSD only: fraction of the stage spent decaying
    across_stages: str = "restart"  # restart | trunk
    rewarm_ratio: float = 0.02  # trunk only: fraction of a grown stage's trunk steps spent re-warming
    branch_ratio: float = 0.1  # trunk only: a member's decay branch, as a fraction of its stage's trunk steps


@dataclass
class ApolloSpec:
    """How a member whose child grows by `+apollo` samples its virtual depths (training/apollo.py): `lvps` (the
    paper's low-value-prioritized sampling: a hyperbola from `lvps_start` above the depth ratio down to `lvps_end`
    at its other end) or `uniform` over every depth from its own to its child's."""

    distribution: str = "lvps"
    lvps_start: float = 0.4
    lvps_end: float = 0.6


@dataclass
class OptimizerSpec:
    """AdamW hyper-parameters, and what happens to its state at growth: `reset` (fresh moments) or `carry`
    (moments mapped through the growth's index maps and scaled per copy, fresh coordinates starting fresh; see
    expansion.operators.carry_tensor and training.optim.GrownAdamW)."""

    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    at_growth: str = "reset"


@dataclass
class Recipe:
    """A model family: members (smallest first), shared model settings, data, budgets, schedule."""

    name: str
    members: list[MemberSpec]
    vocab_size: int = 2048
    seq_len: int = 128
    batch_size: int = 16  # sequences per optimizer step, across all processes (the global batch)
    micro_batch_size: int | None = None  # sequences per device per forward; default batch_size / processes
    tokens_per_param: float = 40.0  # 2x Chinchilla (20 tokens per parameter), the paper's setting
    mode: str = "progressive"
    seed: int = 0
    head_dim: int = 64
    tie_word_embeddings: bool = False
    architecture: str = "llama"  # model_type: llama, mistral, qwen2 or qwen3 (taken from members[0].from if given)
    model: dict = field(default_factory=dict)  # any other config field (rope_parameters, rms_norm_eps, ...)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    data: DataSpec = field(default_factory=DataSpec)
    lr: LRSpec = field(default_factory=LRSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    apollo: ApolloSpec = field(default_factory=ApolloSpec)
    logging_steps: int = 10
    save_steps: int = 200
    eval_steps: int = 100  # validation loss every eval_steps (and at the end): the report's loss-vs-FLOPs curves
    training: dict = field(default_factory=dict)  # any other TrainingArguments field, passed to every stage
    source: str | None = None  # where the recipe was read from (set by load_recipe)
    text: str | None = field(default=None, repr=False)  # the YAML as written (for cards)

    def __post_init__(self):
        _validate(self)


def _validate(recipe: Recipe) -> None:
    _check(bool(recipe.name), "name", recipe.name, "give the family a name")
    _check(len(recipe.members) >= 1, "members", recipe.members, "list at least one member")
    for name in ("vocab_size", "seq_len", "batch_size", "head_dim", "logging_steps", "save_steps", "eval_steps"):
        value = getattr(recipe, name)
        _check(isinstance(value, int) and value > 0, name, value, "use a positive integer")
    _check(recipe.mode in MODES, "mode", recipe.mode, f"choose one of {', '.join(MODES)}")
    supported = ", ".join(ARCHITECTURES)
    _check(recipe.architecture in ARCHITECTURES, "architecture", recipe.architecture, f"choose one of {supported}")
    _check(
        recipe.tokens_per_param > 0,
        "tokens_per_param",
        recipe.tokens_per_param,
        "every member needs tokens: use a positive multiple (2x Chinchilla is 40)",
    )
    for k, member in enumerate(recipe.members):
        _validate_member(k, member)
    positions = recipe.model.get("max_position_embeddings", recipe.seq_len)
    _check(
        isinstance(positions, int) and positions >= recipe.seq_len,
        "model.max_position_embeddings",
        positions,
        f"it must be >= seq_len={recipe.seq_len}: raise it or lower seq_len",
    )
    if any(member.pretrained is not None for member in recipe.members):
        from .pretrained import adopt_pretrained

        adopt_pretrained(recipe)  # before the tokenizer check: the checkpoint's tokenizer is the family's
    _validate_tokenizer(recipe)
    _validate_data(recipe.data)
    _resolve_prepared(recipe)
    from ..training.stage_args import validate_batches

    validate_batches(recipe)
    _validate_schedule(recipe)
    _validate_optimizer(recipe.optimizer)
    _validate_apollo(recipe, member_configs(recipe))  # sizes must resolve and grow member to member


def _validate_member(k: int, member: MemberSpec) -> None:
    if member.tokens_per_param is not None:
        _check(
            member.tokens_per_param > 0,
            f"members[{k}].tokens_per_param",
            member.tokens_per_param,
            "every member needs tokens: use a positive value",
        )
    try:
        width, _ = parse_method(member.method)
    except ExpansionError as error:
        raise RecipeError(f"members[{k}].method: {error}") from None
    if member.noise_std is not None:
        noise = member.noise_std
        finite = isinstance(noise, int | float) and not isinstance(noise, bool) and 0 <= noise <= MAX_NOISE_STD
        fix = f"use a fraction in [0, {MAX_NOISE_STD}] of each tensor's std"
        _check(finite, f"members[{k}].noise_std", noise, fix)
        _check(
            noise == 0 or width != "function_preserving",
            f"members[{k}].noise_std",
            noise,
            "function_preserving adds fresh units, not copies: remove noise_std or use fpi, aki or hypercloning",
        )
    _check(
        member.train_inherited in ("full", "frozen", "lora"),
        f"members[{k}].train_inherited",
        member.train_inherited,
        "choose full, frozen or lora",
    )
    _check(
        k > 0 or member.train_inherited == "full",
        "members[0].train_inherited",
        member.train_inherited,
        "the first member has no parent to inherit from: use full",
    )
    _check(member.lora_r > 0, f"members[{k}].lora_r", member.lora_r, "use a positive rank")
    if member.max_lr is not None:
        _check(member.max_lr > 0, f"members[{k}].max_lr", member.max_lr, "use a positive learning rate")


def _validate_data(data: DataSpec) -> None:
    for name in ("validation_blocks", "shuffle_buffer"):
        value = getattr(data, name)
        _check(isinstance(value, int) and value > 0, f"data.{name}", value, "use a positive integer")
    holdout = data.validation == HOLDOUT
    _check(
        isinstance(data.holdout_documents, int)
        and (data.holdout_documents > 0 if holdout else data.holdout_documents >= 0),
        "data.holdout_documents",
        data.holdout_documents,
        "with validation: holdout, hold out a positive number of documents" if holdout else "use 0 or more",
    )


def _resolve_prepared(recipe: Recipe) -> None:
    """A relative `data.prepared` names a store beside the recipe file (not wherever the command runs from)."""
    prepared = recipe.data.prepared
    if prepared is None:
        return
    _check(bool(str(prepared).strip()), "data.prepared", prepared, "give the token store folder, or remove it")
    if recipe.source and not Path(prepared).is_absolute():
        recipe.data.prepared = str(Path(recipe.source).parent / prepared)


def _validate_optimizer(spec: OptimizerSpec) -> None:
    _check(spec.weight_decay >= 0, "optimizer.weight_decay", spec.weight_decay, "use 0 or more")
    for name in ("adam_beta1", "adam_beta2"):
        value = getattr(spec, name)
        _check(0 <= value < 1, f"optimizer.{name}", value, "use a value in [0, 1)")
    _check(spec.adam_epsilon > 0, "optimizer.adam_epsilon", spec.adam_epsilon, "use a small positive value")
    _check(spec.max_grad_norm >= 0, "optimizer.max_grad_norm", spec.max_grad_norm, "use 0 (no clipping) or more")


def _validate_tokenizer(recipe: Recipe) -> None:
    spec = recipe.tokenizer
    _check(
        bool(spec.path) != bool(spec.train_bpe),
        "tokenizer",
        vars(spec),
        "set exactly one of tokenizer.path (an HF tokenizer) or tokenizer.train_bpe: true",
    )
    if spec.train_bpe:
        _check(
            recipe.vocab_size >= 300,
            "vocab_size",
            recipe.vocab_size,
            "a byte-level BPE needs at least 256 byte tokens plus merges: use vocab_size >= 300",
        )


def _validate_schedule(recipe: Recipe) -> None:
    lr = recipe.lr
    _check(lr.schedule in ("cosine", "wsd"), "lr.schedule", lr.schedule, "choose cosine or wsd")
    _check(0 <= lr.min_lr_ratio <= 1, "lr.min_lr_ratio", lr.min_lr_ratio, "use a fraction in [0, 1]")
    _check(0 <= lr.warmup_ratio < 1, "lr.warmup_ratio", lr.warmup_ratio, "use a fraction in [0, 1)")
    _check(0 < lr.decay_ratio <= 1, "lr.decay_ratio", lr.decay_ratio, "use a fraction in (0, 1]")
    _check(lr.across_stages in ("restart", "trunk"), "lr.across_stages", lr.across_stages, "choose restart or trunk")
    _check(0 <= lr.rewarm_ratio < 1, "lr.rewarm_ratio", lr.rewarm_ratio, "use a fraction in [0, 1)")
    _check(0 < lr.branch_ratio <= 1, "lr.branch_ratio", lr.branch_ratio, "use a fraction in (0, 1]")
    lora = [k for k, m in enumerate(recipe.members) if m.train_inherited == "lora"]
    _check(lr.across_stages != "trunk" or not lora, "lr.across_stages", lr.across_stages,
           f"member {lora[0] if lora else 0} trains LoRA adapters, and a trunk (which the next member grows from) "
           "must be whole weights; use restart, or train_inherited: full or frozen")  # fmt: skip
    if lr.fixed is not None:
        _check(lr.fixed > 0, "lr.fixed", lr.fixed, "use a positive learning rate (or remove it)")
    listed = [m.max_lr for m in recipe.members]
    if lr.fixed is None and None in listed:
        _check(
            lr.smallest is not None and lr.largest is not None and lr.smallest > 0 and lr.largest > 0,
            "lr",
            vars(lr),
            "set lr.fixed, or positive lr.smallest and lr.largest, or max_lr on every member",
        )
    _check(
        recipe.optimizer.at_growth in ("reset", "carry"),
        "optimizer.at_growth",
        recipe.optimizer.at_growth,
        "choose reset or carry",
    )


def _validate_apollo(recipe: Recipe, configs: list) -> None:
    """`+apollo` needs a deeper child, a parent that trains its full layers, and a distribution that can be drawn."""
    from ..training.apollo import DISTRIBUTIONS

    spec = recipe.apollo
    _check(spec.distribution in DISTRIBUTIONS, "apollo.distribution", spec.distribution, "choose lvps or uniform")
    _check(0 < spec.lvps_end <= 1, "apollo.lvps_end", spec.lvps_end, "use a value in (0, 1]")
    _check(spec.lvps_start >= 0, "apollo.lvps_start", spec.lvps_start, "use 0 or more")
    for k in range(1, len(recipe.members)):
        if parse_method(recipe.members[k].method)[1] != "apollo":
            continue
        layers = (configs[k - 1].num_hidden_layers, configs[k].num_hidden_layers)
        where = f"members[{k}].method"
        _check(layers[1] > layers[0], where, recipe.members[k].method, f"apollo grows depth, but {layers[0]} -> "
               f"{layers[1]} layers does not; use identity, or make member {k} deeper")  # fmt: skip
        inherited = recipe.members[k - 1].train_inherited
        _check(inherited == "full", f"members[{k - 1}].train_inherited", inherited,
               f"its stage prepares member {k}'s depth (apollo) by training shared layers; use full")  # fmt: skip


def _check(ok: bool, name: str, value, fix: str) -> None:
    if not ok:
        raise RecipeError(f"{name}={value!r}: {fix}.")


def _from_dict(cls, data, where: str):
    """Build dataclass `cls` from a YAML mapping, refusing unknown fields (named with their path)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping, got {type(data).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        key = "pretrained" if cls is MemberSpec and key == "from" else key  # `from` is a Python keyword
        if key not in fields:
            known = sorted(name for name in fields if name not in INTERNAL_FIELDS)
            raise RecipeError(f"unknown field {path!r}; known fields here: {', '.join(known)}.")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            value = _from_dict(kind, value, path)
        elif key == "members":
            if not isinstance(value, list):
                raise RecipeError(f"members: expected a list of members, got {type(value).__name__}.")
            value = [_from_dict(MemberSpec, item, f"members[{i}]") for i, item in enumerate(value)]
        elif key not in INTERNAL_FIELDS:
            value = coerce(value, kind, path)
        kwargs[key] = value
    missing = [
        f.name
        for f in fields.values()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs
    ]
    if missing:
        raise RecipeError(f"{where or 'recipe'}: missing required field(s) {', '.join(missing)}.")
    return cls(**kwargs)


def load_recipe(name_or_path: str, **overrides) -> Recipe:
    """A shipped recipe by name (`tiny`) or a YAML file; `overrides` replace top-level fields (e.g. mode)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise RecipeError(f"recipe {name_or_path!r}: no such file and no shipped recipe (shipped: {shipped}).")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=YamlLoader) or {}
    except UnicodeDecodeError as error:
        raise RecipeError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8."
        ) from None
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({str(error).splitlines()[0]}).") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping (name:, members:, ...), not a {type(data).__name__}.")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}, "source": str(path), "text": text}
    return _from_dict(Recipe, data, "")


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


__all__ = [
    "HOLDOUT",
    "MemberSpec",
    "Recipe",
    "RecipeError",
    "base_config",
    "load_recipe",
    "member_configs",
    "shipped_recipes",
    "solve_shape",
]
