"""The architectures hf_progressive grows, as data: one `Architecture` per `model_type`, naming every tensor template
of the decoder (Hugging Face names, verbatim), the role of each of its axes, its norms and biases, and the classes
transformers builds it with. The operators are generic over these tables; adding an architecture means adding an entry
here and a config/model subclass pair in `models/`.

Axis names (units the model is made of): "hidden" (hidden_size), "ffn" (intermediate_size), "q" (query heads), "kv"
(key/value heads), "head_dim" (the dimensions inside one head: per-head norms), "vocab" (vocab_size, never grows).
Roles: "out" = the tensor *produces* this axis (rows are units: copy them), "in" = the tensor *sums over* it (fan-in:
copies share the weight), "gain" = an RMSNorm gain over the axis, "fixed" = never grows.
`head` says which part of attention a head axis carries ("query", "key" or "value"): it decides what a new dimension
inside a head starts as when head_dim grows (see operators.py)."""

from dataclasses import dataclass, field

from ..errors import ExpansionError


@dataclass(frozen=True)
class TensorSpec:
    """How one tensor is laid out: `axes` holds one `(axis, role)` pair per dimension."""

    axes: tuple[tuple[str, str], ...]
    writes_residual: bool = False  # zeroed in inserted identity blocks (LLaMA Pro) and residual rows start at zero
    optional: str | None = None  # config flag that must be true for the tensor to exist
    head: str | None = None  # "query", "key" or "value": what its head axis (q or kv) carries

    @property
    def is_bias(self) -> bool:
        return len(self.axes) == 1 and self.axes[0][1] == "out"


def _attention(bias: str | None, qkv_bias: str | None = None, head_norms: bool = False) -> dict[str, TensorSpec]:
    """The attention block's tensors, in module order: q/k/v/o projections with their biases (`qkv_bias` names the
    config flag of the q/k/v biases, or "always"; `bias` the flag of the o bias), and Qwen3's per-head q/k RMSNorms
    over head_dim."""
    qkv = bias if qkv_bias is None else qkv_bias
    tensors = {}
    for name, axis, head in (("q", "q", "query"), ("k", "kv", "key"), ("v", "kv", "value")):
        tensors[f"self_attn.{name}_proj.weight"] = TensorSpec(((axis, "out"), ("hidden", "in")), head=head)
        if qkv is not None:
            flag = None if qkv == "always" else qkv
            tensors[f"self_attn.{name}_proj.bias"] = TensorSpec(((axis, "out"),), optional=flag, head=head)
    tensors["self_attn.o_proj.weight"] = TensorSpec(
        (("hidden", "out"), ("q", "in")), writes_residual=True, head="value"
    )
    if bias is not None:
        tensors["self_attn.o_proj.bias"] = TensorSpec((("hidden", "out"),), writes_residual=True, optional=bias)
    if head_norms:
        tensors["self_attn.q_norm.weight"] = TensorSpec((("head_dim", "gain"),), head="query")
        tensors["self_attn.k_norm.weight"] = TensorSpec((("head_dim", "gain"),), head="key")
    return tensors


def _mlp(bias: str | None) -> dict[str, TensorSpec]:
    """The gated MLP's tensors, in module order, with their biases where the config flag `bias` says so."""
    tensors = {}
    for name, spec in (
        ("gate_proj", TensorSpec((("ffn", "out"), ("hidden", "in")))),
        ("up_proj", TensorSpec((("ffn", "out"), ("hidden", "in")))),
        ("down_proj", TensorSpec((("hidden", "out"), ("ffn", "in")), writes_residual=True)),
    ):
        tensors[f"mlp.{name}.weight"] = spec
        if bias is not None:
            tensors[f"mlp.{name}.bias"] = TensorSpec(
                spec.axes[:1], writes_residual=spec.writes_residual, optional=bias
            )
    return tensors


def _layer(attention: dict[str, TensorSpec], mlp: dict[str, TensorSpec]) -> dict[str, TensorSpec]:
    """A pre-norm decoder layer: norm, attention, norm, MLP (the order of its state dict)."""
    gain = TensorSpec((("hidden", "gain"),))
    return {"input_layernorm.weight": gain, **attention, "post_attention_layernorm.weight": gain, **mlp}


GLOBAL_TENSORS: dict[str, TensorSpec] = {
    "model.embed_tokens.weight": TensorSpec((("vocab", "fixed"), ("hidden", "out")), writes_residual=True),
    "model.norm.weight": TensorSpec((("hidden", "gain"),)),
    "lm_head.weight": TensorSpec((("vocab", "fixed"), ("hidden", "in"))),
}


@dataclass(frozen=True)
class Architecture:
    """One decoder family: its `model_type`, the transformers classes (`{prefix}ForCausalLM`, `{prefix}DecoderLayer`,
    `{prefix}RMSNorm`, `{prefix}RotaryEmbedding` in `transformers.models.{model_type}.modeling_{model_type}`), the
    tensors of one layer and of the model (in state-dict order), and the config fields that must stay equal."""

    model_type: str
    prefix: str
    layer_tensors: dict[str, TensorSpec]
    global_tensors: dict[str, TensorSpec] = field(default_factory=lambda: GLOBAL_TENSORS)
    fixed_fields: tuple[str, ...] = ()  # beyond the common ones: config flags a growth must not change

    @property
    def causal_lm(self) -> str:
        return f"{self.prefix}ForCausalLM"

    def classes(self, *names: str) -> tuple:
        """transformers' classes of this architecture by suffix, e.g. `classes("DecoderLayer", "RMSNorm")`: imported
        here on first use, the modeling module only when a name other than "Config" asks for it."""
        import importlib

        def module(kind: str):
            return importlib.import_module(f"transformers.models.{self.model_type}.{kind}_{self.model_type}")

        return tuple(getattr(module("configuration" if n == "Config" else "modeling"), self.prefix + n) for n in names)

    def config_class(self):
        """transformers' config class (imported without the modeling code)."""
        return self.classes("Config")[0]

    @property
    def head_norms(self) -> bool:
        """Whether queries and keys pass a per-head RMSNorm (Qwen3): new query dimensions are then silenced by a zero
        gain rather than zero weights, so the norm's RMS over the grown head stays the old one."""
        return any(spec.axes == (("head_dim", "gain"),) for spec in self.layer_tensors.values())


ARCHITECTURES: dict[str, Architecture] = {
    arch.model_type: arch
    for arch in (
        Architecture(
            "llama",
            "Llama",
            _layer(_attention("attention_bias"), _mlp("mlp_bias")),
            fixed_fields=("attention_bias", "mlp_bias"),
        ),
        Architecture("mistral", "Mistral", _layer(_attention(None), _mlp(None)), fixed_fields=("sliding_window",)),
        Architecture(
            "qwen2",
            "Qwen2",
            _layer(_attention(None, qkv_bias="always"), _mlp(None)),
            fixed_fields=("use_sliding_window", "sliding_window", "max_window_layers"),
        ),
        Architecture(
            "qwen3",
            "Qwen3",
            _layer(_attention("attention_bias", head_norms=True), _mlp(None)),
            fixed_fields=("attention_bias", "use_sliding_window", "sliding_window", "max_window_layers"),
        ),
    )
}


def architecture_error(model_type) -> str:
    """The one line that refuses an architecture hf_progressive does not grow, naming those it does."""
    return (
        f"model_type={model_type!r}: hf_progressive grows {', '.join(ARCHITECTURES)} decoders (pre-norm RMSNorm, "
        "dense MLP, RoPE); embedding scaling (Gemma), post-norm (OLMo2) and mixture-of-experts models are not "
        "supported."
    )


def architecture(config) -> Architecture:
    """The architecture entry of `config` (by `model_type`); refuses, in one line, one hf_progressive does not grow."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ExpansionError(architecture_error(model_type))
    return ARCHITECTURES[model_type]


__all__ = ["ARCHITECTURES", "GLOBAL_TENSORS", "Architecture", "TensorSpec", "architecture", "architecture_error"]
