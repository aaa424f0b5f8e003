"""The growth operators by name, as data: the width and depth operators, the defaults, the paired-noise levels, and
`parse_method` ("fpi+stack" -> ("fpi", "stack")). No tensors: recipes and argument parsing read these without torch."""

from ..errors import ExpansionError


# width operator -> how new units are sourced: "fresh" (Gesmundo & Maile 2023: new weights, zero residual writes),
# "random" (bert2BERT FPI/AKI: copies of randomly chosen old units, as balanced as possible), "cyclic" (HyperCloning:
# every unit cloned the same integer number of times, block-repeated)
WIDTH_METHODS = {"function_preserving": "fresh", "fpi": "random", "aki": "random", "hypercloning": "cyclic"}


# depth operator -> docstring of `_layer_sources`; apollo grows as interpolate does, and asks that the parent's stage
# trains with Apollo's sampled depths over these same shared layers (training/apollo.py)
DEPTH_METHODS = ("identity", "interpolate", "stack", "apollo")


DEFAULT_WIDTH, DEFAULT_DEPTH = "function_preserving", "identity"


MAX_NOISE_STD = 1.0  # noise as large as the weights' own spread: beyond it nothing of the parent survives


# default paired noise (a fraction of each tensor's std) by width operator: copies of a unit start identical and,
# fed identical gradients, would stay identical forever; paired noise (HyperCloning) breaks the tie and keeps the
# function exactly (it sums to zero over each group of copies). Fresh units need none.
DEFAULT_NOISE_STD = {"function_preserving": 0.0, "fpi": 0.01, "aki": 0.01, "hypercloning": 0.01}


def parse_method(method: str) -> tuple[str, str]:
    """`"fpi+stack"` -> `("fpi", "stack")`; a lone width or depth name takes the default for the other half."""
    width, depth = DEFAULT_WIDTH, DEFAULT_DEPTH
    parts = [part.strip() for part in method.split("+")] if method else []
    if not parts or len(parts) > 2:
        raise ExpansionError(f"method={method!r}: expected 'WIDTH', 'DEPTH' or 'WIDTH+DEPTH'. {_known_methods()}")
    for part in parts:
        if part in WIDTH_METHODS:
            width = part
        elif part in DEPTH_METHODS:
            depth = part
        else:
            raise ExpansionError(f"method={method!r}: unknown operator {part!r}. {_known_methods()}")
    return width, depth


def interpolated_layers(n_old: int, n_new: int) -> list[int]:
    """The layer of an `n_old`-layer model that layer l of `n_new` copies under interpolation (Apollo / STEP):
    floor(l * n_old / n_new), so each old layer repeats in place. The interpolate and apollo operators and Apollo's
    shared virtual layers all ask this one rule."""
    return [(layer * n_old) // n_new for layer in range(n_new)]


def _known_methods() -> str:
    return f"Width operators: {', '.join(WIDTH_METHODS)}; depth operators: {', '.join(DEPTH_METHODS)}."


__all__ = [
    "DEFAULT_DEPTH",
    "DEFAULT_NOISE_STD",
    "DEFAULT_WIDTH",
    "DEPTH_METHODS",
    "MAX_NOISE_STD",
    "WIDTH_METHODS",
    "interpolated_layers",
    "parse_method",
]
