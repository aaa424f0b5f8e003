"""The growth plan: every decision an expansion makes before it touches a tensor. Which operators run, which old unit
each new unit copies along every axis (index maps), which old layer each new layer copies. It is resolved once from
(src config, dst config, method, seed), so that every tensor can afterwards be expanded on its own, in any order: in
memory or streamed shard by shard, with bit-identical results."""

import copy
import math
from dataclasses import dataclass
from functools import cached_property

import torch
from transformers.utils import logging

from ..errors import ExpansionError
from .architectures import architecture
from .keys import axis_sizes
from .methods import DEFAULT_NOISE_STD, DEFAULT_WIDTH, MAX_NOISE_STD, WIDTH_METHODS, interpolated_layers, parse_method
from .sizes import SIZE_FIELDS, validate_growth


logger = logging.get_logger(__name__)

FRESH = -1  # an index-map entry for a unit that copies nothing (new weights: random or zero, see expansion.py)

PER_LAYER_AXES = ("q", "kv", "ffn")  # axes whose units belong to one layer (AKI sources their new units upstairs)
# fields a growth leaves untouched (sizes grow, rms_norm_eps is derived by the plan); each architecture adds its own
FIXED_FIELDS = ("model_type", "vocab_size", "tie_word_embeddings", "hidden_act")


@dataclass(frozen=True)
class IndexMap:
    """For each new unit along one axis, the old unit it copies (or `FRESH`)."""

    sources: tuple[int, ...]
    n_old: int

    @property
    def unchanged(self) -> bool:
        return self.sources == tuple(range(self.n_old))

    @cached_property
    def counts(self) -> tuple[int, ...]:
        """How many new units copy each old unit (the fan-in divisor of bert2BERT's FPI)."""
        counts = [0] * self.n_old
        for source in self.sources:
            if source != FRESH:
                counts[source] += 1
        return tuple(counts)

    @cached_property  # asked once per tensor and axis by the growth record and the operators: computed once a map
    def first(self) -> tuple[bool, ...]:
        """True where a new unit is the first copy of its old unit (it *is* that unit; later copies are new)."""
        seen: set[int] = set()
        flags = []
        for source in self.sources:
            flags.append(source != FRESH and source not in seen)
            seen.add(source)
        return tuple(flags)

    @cached_property
    def first_mask(self) -> torch.Tensor:
        """`first` as a bool tensor (shared: read it, never write to it)."""
        return torch.tensor(self.first, dtype=torch.bool)

    @property
    def inherited(self) -> int:
        return sum(source != FRESH for source in self.sources)

    def rows(self, per_unit: int) -> torch.Tensor:
        """Row-level map for tensors with `per_unit` rows a unit (a head is `head_dim` rows): int64, `FRESH` kept."""
        units = torch.tensor(self.sources, dtype=torch.long)
        offsets = torch.arange(per_unit, dtype=torch.long)
        rows = (units[:, None] * per_unit + offsets[None, :]).flatten()
        return torch.where(units.repeat_interleave(per_unit) == FRESH, FRESH, rows)


@dataclass(frozen=True)
class LayerSource:
    """Where one layer of the grown model comes from: old layer `source`; `inserted` for a new block (not the first
    copy of its old layer); `donor` is the old layer AKI takes new units from (the next one, or itself at the top)."""

    source: int
    inserted: bool
    donor: int


def _balanced(n_old: int, k: int, generator: torch.Generator) -> list[int]:
    """`k` old units drawn so that every old unit is used floor(k/n_old) or ceil(k/n_old) times (bert2BERT FPI)."""
    picks: list[int] = []
    while len(picks) < k:
        picks += torch.randperm(n_old, generator=generator).tolist()
    return picks[:k]


def _extra(n_old: int, k: int, policy: str, generator: torch.Generator) -> list[int]:
    """Sources for `k` units beyond the inherited ones."""
    if policy == "fresh":
        return [FRESH] * k
    if policy == "cyclic":
        return [i % n_old for i in range(k)]
    return _balanced(n_old, k, generator)


def _axis_map(n_old: int, n_new: int, policy: str, generator: torch.Generator) -> IndexMap:
    return IndexMap(tuple(range(n_old)) + tuple(_extra(n_old, n_new - n_old, policy, generator)), n_old)


def _dim_map(old: int, new: int) -> IndexMap:
    """Where each old dimension of a head sits after head_dim grows from `old` to `new` (the rest `FRESH`). In the
    rotate-half layout, dimensions i and i + head_dim/2 form rotary pair i, of frequency base^(-2i/head_dim); at an
    integer ratio k = new/old, pair k*i of the grown head has exactly that frequency, so old pair i moves there (at
    other ratios, to the nearest pair: the frequencies then differ and the growth does not preserve the function)."""
    half, new_half = old // 2, new // 2
    sources = [FRESH] * new
    for i in range(half):
        j = math.floor(i * new / old + 0.5)
        sources[j], sources[new_half + j] = i, half + i
    return IndexMap(tuple(sources), old)


def _head_maps(src, dst, policy: str, generator: torch.Generator) -> tuple[IndexMap, IndexMap]:
    """Query-head and kv-head maps that keep GQA groups intact: every old query head is seated in a new group whose
    kv head copies its old kv head, so it still attends with the same keys and values."""
    n_q, n_kv, new_q, new_kv = (
        src.num_attention_heads,
        src.num_key_value_heads,
        dst.num_attention_heads,
        dst.num_key_value_heads,
    )
    group, new_group = n_q // n_kv, new_q // new_kv
    seats = -(-group // new_group)  # new kv groups each old group needs to seat all its query heads
    kv = [j for j in range(n_kv) for _ in range(seats)]
    kv += _extra(n_kv, new_kv - len(kv), policy, generator)
    q = [FRESH] * new_q
    for j in range(n_kv):
        slots = [g * new_group + s for g, source in enumerate(kv) if source == j for s in range(new_group)]
        heads = [j * group + i for i in range(group)]
        fill = heads + [
            FRESH if i == FRESH else heads[i] for i in _extra(group, len(slots) - group, policy, generator)
        ]
        for slot, head in zip(slots, fill, strict=False):  # fill is as long as slots
            q[slot] = head
    return IndexMap(tuple(q), n_q), IndexMap(tuple(kv), n_kv)


def default_inserted_layers(n_old: int, n_new: int) -> list[int]:
    """Positions (in the grown model) of `n_new - n_old` identity blocks spread evenly: one after every
    `n_old / (n_new - n_old)` old blocks, as LLaMA Pro does; the last one lands on top."""
    n_insert = n_new - n_old
    after = [math.ceil((k + 1) * n_old / n_insert) - 1 for k in range(n_insert)]  # old layer each block follows
    return [a + k + 1 for k, a in enumerate(after)]


def _layer_sources(n_old: int, n_new: int, depth: str, inserted_layers: list[int] | None) -> tuple[LayerSource, ...]:
    """identity (LLaMA Pro): old layers keep their order, new blocks sit at `inserted_layers` and copy the old layer
    below them (the one above when inserted first); interpolate and apollo (Apollo / STEP): layer l copies
    floor(l * L_old / L_new) (`methods.interpolated_layers`); stack (G_stack, Du et al. 2024): layer l copies
    l mod L_old."""
    if depth == "identity":
        inserted = set(inserted_layers if inserted_layers is not None else default_inserted_layers(n_old, n_new))
        sources, old = [], -1
        for layer in range(n_new):
            old += layer not in inserted
            sources.append(max(old, 0))
        flags = [layer in inserted for layer in range(n_new)]
    else:
        stacked = [layer % n_old for layer in range(n_new)]
        sources = stacked if depth == "stack" else interpolated_layers(n_old, n_new)
        flags = [source in sources[:layer] for layer, source in enumerate(sources)]
    return tuple(LayerSource(s, f, min(s + 1, n_old - 1)) for s, f in zip(sources, flags, strict=True))


@dataclass(frozen=True)
class GrowthPlan:
    """A resolved growth request. Build it with `GrowthPlan.from_configs`; `dst` is the target config with the
    `rms_norm_eps` the width operator needs (see `norm_ratio`)."""

    src: object
    dst: object
    width_method: str
    depth_method: str
    seed: int
    noise_std: float
    maps: dict[str, IndexMap]
    layers: tuple[LayerSource, ...]

    @classmethod
    def from_configs(
        cls,
        src,
        dst,
        method: str = DEFAULT_WIDTH,
        seed: int = 0,
        noise_std: float | None = None,
        inserted_layers: list[int] | None = None,
    ) -> "GrowthPlan":
        """Resolve `method` ("WIDTH", "DEPTH" or "WIDTH+DEPTH") for growing `src` into `dst` (both LlamaConfigs);
        `noise_std=None` takes the width operator's `DEFAULT_NOISE_STD`."""
        width, depth = parse_method(method)
        noise_std = DEFAULT_NOISE_STD[width] if noise_std is None else noise_std
        validate_growth(src, axis_sizes(dst) | {"num_hidden_layers": dst.num_hidden_layers})
        _check_fixed_fields(src, dst)
        _check_options(width, depth, src, dst, noise_std, inserted_layers)
        generator = torch.Generator().manual_seed(seed)
        policy = WIDTH_METHODS[width]
        old, new = axis_sizes(src), axis_sizes(dst)
        maps = {axis: _axis_map(old[axis], new[axis], policy, generator) for axis in ("hidden", "ffn")}
        maps["q"], maps["kv"] = _head_maps(src, dst, policy, generator)
        maps["head_dim"] = _dim_map(src.head_dim, dst.head_dim)
        layers = _layer_sources(src.num_hidden_layers, dst.num_hidden_layers, depth, inserted_layers)
        plan = cls(src, dst, width, depth, seed, noise_std, maps, layers)
        return plan._with_norm_eps()

    @property
    def norm_ratio(self) -> float:
        """r = (inherited hidden units) / hidden_size_new. With the new residual dims at zero (or copies), mean(x^2)
        becomes r * mean(x^2), so `rms_norm_eps` is scaled by r and gains by sqrt(r) (divided by the copy count)."""
        hidden = self.maps["hidden"]
        return hidden.inherited / len(hidden.sources)

    @property
    def function_preserving(self) -> bool:
        """Whether this plan keeps the model's function exactly (up to float rounding)."""
        depth_ok = self.depth_method == "identity" or self.src.num_hidden_layers == self.dst.num_hidden_layers
        aki_new_units = self.width_method == "aki" and any(not all(self.maps[a].first) for a in PER_LAYER_AXES)
        counts = self.maps["hidden"].counts
        return depth_ok and not aki_new_units and len(set(counts)) == 1

    @property
    def query_scale(self) -> float:
        """sqrt(new head_dim / old head_dim): attention scores are divided by sqrt(head_dim), so the old query
        dimensions are multiplied by this (in the q weights, or in Qwen3's q-norm gains) to keep every score."""
        return math.sqrt(self.dst.head_dim / self.src.head_dim)

    def unchanged(self, axis: str) -> bool:
        """Whether nothing grows along `axis` (a head axis also grows when head_dim does)."""
        dims = self.maps["head_dim"].unchanged if axis in ("q", "kv") else True
        return self.maps[axis].unchanged and dims

    def rows(self, axis: str) -> torch.Tensor:
        """Per row of the grown tensors along `axis`, the old row it copies, or `FRESH` (a fresh unit or, along a head
        axis, a fresh dimension inside a copied head): int64."""
        if axis not in ("q", "kv"):
            return self.maps[axis].rows(1)
        units, dims = _head_rows(self.maps[axis].sources, self.maps["head_dim"].sources)
        return torch.where((units == FRESH) | (dims == FRESH), FRESH, units * self.src.head_dim + dims)

    def fresh_dims(self, axis: str) -> torch.Tensor:
        """Per row along head axis `axis`: True for a fresh dimension inside a copied head (what it starts as depends
        on the tensor's `head` role; operators.py), False elsewhere (and along every other axis)."""
        if axis not in ("q", "kv"):
            return torch.zeros(len(self.maps[axis].sources), dtype=torch.bool)
        units, dims = _head_rows(self.maps[axis].sources, self.maps["head_dim"].sources)
        return (units != FRESH) & (dims == FRESH)

    def tiles(self, axis: str) -> torch.Tensor:
        """`rows(axis)` with every fresh dimension of a copied head reading the old dimension placed just before it in
        its half of the head (HyperCloning's tiling: at an integer ratio each old dimension appears k times, so an RMS
        over the grown head is the old one)."""
        dims = self.maps["head_dim"].sources if axis in ("q", "kv", "head_dim") else None
        if dims is None:
            return self.rows(axis)
        half, tiled = len(dims) // 2, list(dims)
        for j, source in enumerate(dims):
            if source == FRESH:
                tiled[j] = tiled[j - 1] if j % half else (0 if j < half else self.src.head_dim // 2)
        if axis == "head_dim":
            return torch.tensor(tiled)
        units, dims = _head_rows(self.maps[axis].sources, tiled)
        return torch.where(units == FRESH, FRESH, units * self.src.head_dim + dims)

    def first_rows(self, axis: str) -> torch.Tensor:
        """Per row along `axis`: True where the row *is* an old one (the first copy of its unit, and, along a head
        axis, an old dimension at its new place); every other row is new."""
        if axis not in ("q", "kv"):
            return self.maps[axis].first_mask  # shared: callers only read it
        first, dims = _head_rows(self.maps[axis].first, self.maps["head_dim"].sources)
        return first & (dims != FRESH)

    def _with_norm_eps(self) -> "GrowthPlan":
        dst = copy.deepcopy(self.dst)
        dst.rms_norm_eps = self.src.rms_norm_eps * self.norm_ratio
        if dst.rms_norm_eps != self.dst.rms_norm_eps:
            logger.info(f"rms_norm_eps {self.dst.rms_norm_eps:g} -> {dst.rms_norm_eps:g} so RMSNorm stays exact")
        return GrowthPlan(dst=dst, **{k: v for k, v in vars(self).items() if k != "dst"})

    def to_json(self) -> dict:
        """The plan as growth.json records it."""
        grows_head_dim = not self.unchanged("head_dim")  # growth.json of a growth that keeps head_dim is as before
        sizes = [name for name in SIZE_FIELDS if name != "head_dim" or grows_head_dim]
        return {
            "width_method": self.width_method,
            "depth_method": self.depth_method,
            "seed": self.seed,
            "noise_std": self.noise_std,
            "function_preserving": self.function_preserving,
            "src_sizes": {name: getattr(self.src, name) for name in sizes},
            "dst_sizes": {name: getattr(self.dst, name) for name in sizes},
            "rms_norm_eps": {"src": self.src.rms_norm_eps, "dst": self.dst.rms_norm_eps},
            "index_maps": {a: list(m.sources) for a, m in self.maps.items() if a != "head_dim" or not m.unchanged},
            "layers": [vars(layer) for layer in self.layers],
        }


def _check_fixed_fields(src, dst) -> None:
    arch = architecture(src)
    for name in (*FIXED_FIELDS, *arch.fixed_fields):
        old, new = getattr(src, name, None), getattr(dst, name, None)
        if old != new:
            raise ExpansionError(
                f"{name}: the target has {new!r} but the source has {old!r}; growth keeps {name} fixed. Build the "
                f"target with Progressive{arch.prefix}Config.from_smaller(source)."
            )


def _check_options(width: str, depth: str, src, dst, noise_std: float, inserted_layers: list[int] | None) -> None:
    if not (isinstance(noise_std, int | float) and 0 <= noise_std < math.inf):
        raise ExpansionError(f"noise_std={noise_std}: use a finite number >= 0 (a fraction of each tensor's std).")
    if noise_std > MAX_NOISE_STD:
        raise ExpansionError(
            f"noise_std={noise_std}: it is a fraction of each tensor's std; above {MAX_NOISE_STD} the noise outweighs "
            "the weights it perturbs (the default is 0.01)."
        )
    if noise_std and width == "function_preserving":
        raise ExpansionError("noise_std: only copy-based width operators (fpi, aki, hypercloning) use paired noise.")
    if width == "hypercloning":
        old, new = axis_sizes(src), axis_sizes(dst)
        for axis, name in (
            ("hidden", "hidden_size"),
            ("ffn", "intermediate_size"),
            ("q", "num_attention_heads"),
            ("kv", "num_key_value_heads"),
        ):
            if new[axis] % old[axis]:
                heads = f" (heads of head_dim {dst.head_dim})" if axis in ("q", "kv") else ""
                raise ExpansionError(
                    f"{name}: hypercloning clones every unit an integer number of times, but {old[axis]} -> "
                    f"{new[axis]}{heads} is a {new[axis] / old[axis]:g}x ratio. Use a multiple of {old[axis]}, or "
                    "method 'fpi' (any ratio) or 'function_preserving'."
                )
    _check_head_dim(width, src.head_dim, dst.head_dim)
    if inserted_layers is not None:
        n_old, n_new = src.num_hidden_layers, dst.num_hidden_layers
        if depth != "identity":
            raise ExpansionError(f"inserted_layers: only the 'identity' depth operator inserts blocks, not {depth!r}.")
        if (
            sorted(set(inserted_layers)) != sorted(inserted_layers)
            or len(inserted_layers) != n_new - n_old
            or any(not 0 <= i < n_new for i in inserted_layers)
        ):
            raise ExpansionError(
                f"inserted_layers={inserted_layers}: give {n_new - n_old} distinct positions in [0, {n_new}) "
                f"(num_hidden_layers {n_old} -> {n_new}), e.g. {default_inserted_layers(n_old, n_new)}."
            )


def _head_rows(per_head, per_dim) -> tuple[torch.Tensor, torch.Tensor]:
    """Spread a per-head and a per-dimension sequence over the rows of a head axis (head-major): for every row, its
    head's value and its dimension's value."""
    return torch.tensor(per_head).repeat_interleave(len(per_dim)), torch.tensor(per_dim).repeat(len(per_head))


def _check_head_dim(width: str, old: int, new: int) -> None:
    """A function-preserving growth needs an integer head_dim ratio, so every old rotary frequency exists again."""
    if new % old and width != "aki":
        raise ExpansionError(
            f"head_dim={new}: {old} -> {new} is a {new / old:g}x ratio, but RoPE's frequencies only line up at an "
            f"integer ratio (old pair i becomes pair k*i), so {width} would not preserve the function. Use head_dim "
            f"{old * -(-new // old)} (a multiple of {old}), or method 'aki', which does not preserve it anyway."
        )


__all__ = [
    "FRESH",
    "GrowthPlan",
    "IndexMap",
    "LayerSource",
]
