"""Apollo's prepared depth growth (Pan et al. 2024, "Preparing Lessons for Progressive Training on Language
Models"). A member whose child grows by `+apollo` trains, step by step, at a sampled *virtual depth* D between its
own depth L and its child's: its decoder runs D layers, layer l being its own layer `interpolated_layers(L, D)[l]`
(the same module, so one set of parameters). It thereby learns what its child's deeper layers will do, and the child
is then grown by interpolation in that same order.

This module owns the depth distribution (low-value-prioritized sampling, LVPS, and the uniform one the paper
compares it with), the draw of each step (a pure function of seed, depth and step, so a resumed stage draws the same
depths and the planner can count their FLOPs before training), the exact probability of each depth, and the context
that runs a decoder at a virtual depth. Nothing here imports torch at import time.

LVPS, as the authors' code draws it: x ~ U(1e-6, 1), y = m / (x + n), the hyperbola through (1e-6, R + start) and
(1, end) with R = max_layers / layers; y is clipped to [1, R] and D = floor(y L). With the paper's start 0.4 and
end 0.6, low depths come first: for R = 2, y is clipped to 1 (D = L) with probability 0.53 and to R (D = 2L) with
0.07; with L = 3, P(D = 3, 4, 5, 6) = 0.73, 0.12, 0.08, 0.07."""

import contextlib
import math
import random
from dataclasses import dataclass

from ..expansion.methods import interpolated_layers


X_MIN = 1e-6  # lower end of LVPS's uniform draw (the paper's code)
DISTRIBUTIONS = ("lvps", "uniform")


@dataclass(frozen=True)
class DepthSampler:
    """The virtual depth of each optimizer step of one stage: `layers` is the member's own depth, `max_layers` its
    child's, and steps from `until_step` on (a decay branch) run at the member's own depth."""

    layers: int
    max_layers: int
    seed: int
    until_step: int
    distribution: str = "lvps"
    start: float = 0.4  # LVPS: the curve starts this far above R, so the deepest depth keeps some mass
    end: float = 0.6  # LVPS: the curve's value at x = 1; below 1, so the member's own depth is the likeliest

    def _curve(self) -> tuple[float, float]:
        """m, n of y = m / (x + n) through (X_MIN, R + start) and (1, end)."""
        begin = self.max_layers / self.layers + self.start
        n = (begin * X_MIN - self.end) / (self.end - begin)
        return self.end * (n + 1), n

    def depth(self, step: int) -> int:
        """The virtual depth of optimizer step `step` (0-based)."""
        if step >= self.until_step or self.max_layers <= self.layers:
            return self.layers
        draw = random.Random(f"apollo:{self.seed}:{self.layers}:{self.max_layers}:{step}")
        if self.distribution == "uniform":
            return draw.randint(self.layers, self.max_layers)
        m, n = self._curve()
        depth = math.floor(m / (draw.uniform(X_MIN, 1.0) + n) * self.layers + 1e-9)
        return min(self.max_layers, max(self.layers, depth))

    def mass(self) -> dict[int, float]:
        """P(D = d) for every depth d (exact, from the inverse of the curve; for tests and the docs)."""
        depths = range(self.layers, self.max_layers + 1)
        if self.distribution == "uniform":
            return {d: 1 / len(depths) for d in depths}
        m, n = self._curve()

        def at_least(d: int) -> float:  # P(D >= d) = P(x <= m L / d - n)
            if d <= self.layers:
                return 1.0
            if d > self.max_layers:
                return 0.0
            return min(1.0, max(0.0, (m * self.layers / d - n - X_MIN) / (1 - X_MIN)))

        return {d: at_least(d) - at_least(d + 1) for d in depths}

    def added_layers(self, start: int, stop: int) -> int:
        """Sum over steps start..stop-1 of the layers run beyond the member's own depth (the ledger's extra FLOPs)."""
        return sum(self.depth(step) - self.layers for step in range(start, min(stop, self.until_step)))


def decoder_of(model):
    """The decoder (the module holding `.layers`) of a causal LM, through DDP / accelerate wrappers."""
    inner = getattr(model, "module", model)
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else inner.model
    if not hasattr(decoder, "layers"):
        raise TypeError(f"{type(inner).__name__}: no decoder layers to share (Apollo needs a decoder-only LM).")
    return decoder


@contextlib.contextmanager
def virtual_depth(model, depth: int):
    """Run `model` at `depth` decoder layers for the duration: layer l is the model's own layer
    `interpolated_layers(L, depth)[l]`, the same module object (shared parameters). The KV cache is off (a shared
    layer would append to its own cache twice), and `layer_types` follows the shared layers."""
    import torch

    decoder = decoder_of(model)
    layers, config = decoder.layers, decoder.config
    if depth == len(layers):
        yield
        return
    saved = {
        key: getattr(config, key) for key in ("num_hidden_layers", "layer_types", "use_cache") if hasattr(config, key)
    }
    sources = interpolated_layers(len(layers), depth)
    decoder.layers = torch.nn.ModuleList([layers[source] for source in sources])
    config.num_hidden_layers, config.use_cache = depth, False
    if saved.get("layer_types") is not None:
        config.layer_types = [saved["layer_types"][source] for source in sources]
    try:
        yield
    finally:
        decoder.layers = layers
        for key, value in saved.items():
            setattr(config, key, value)


__all__ = ["DISTRIBUTIONS", "DepthSampler", "decoder_of", "virtual_depth"]
