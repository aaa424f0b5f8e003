"""Reading a YAML value as a dataclass field's annotated type, the one rule for recipes and `training:` alike:
integers are accepted for floats and integral floats (1e6) for integers, booleans are never numbers (nor numbers
booleans, nor strings either), floats must be finite, an Enum field takes one of its values. Anything else is a
one-line `RecipeError` naming the field, the value and the type it needs."""

import enum
import math
import types
import typing

from ..errors import RecipeError


SCALARS = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string", dict: "a mapping"}


def coerce(value, kind, path: str, finite: bool = True):
    """`value` as the annotated type `kind` (of field `path`), or a one-line RecipeError. `finite=False` lets floats
    be inf or nan (a recorded loss may be)."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    if value is None and type(None) in options:
        return None
    for option in options:
        done, coerced = _as(value, option, finite)
        if done:
            return coerced
    wanted = " or ".join(_describe(o) for o in options if o is not type(None))
    raise RecipeError(f"{path}: expected {wanted}, got {value!r}.")


def _describe(kind) -> str:
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "one of " + ", ".join(str(member.value) for member in kind)
    origin = typing.get_origin(kind) or kind
    return SCALARS.get(origin, "a list" + (" of strings" if typing.get_args(kind) == (str,) else ""))


def _as(value, kind, finite: bool = True) -> tuple[bool, object]:
    if kind is typing.Any:
        return True, value
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        values = {member.value for member in kind}
        return (isinstance(value, kind) or (isinstance(value, str) and value in values)), value
    origin = typing.get_origin(kind) or kind
    if isinstance(value, bool):
        return origin is bool, value
    if origin is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return True, int(value)
    if origin is float and isinstance(value, int | float):
        return math.isfinite(value) or not finite, value  # an int stays as written (messages quote the YAML)
    if origin is list:
        (item,) = typing.get_args(kind) or (typing.Any,)
        return isinstance(value, list) and all(_as(v, item)[0] for v in value), value
    if not isinstance(origin, type):  # Literal, Callable, ...: left to the dataclass's own checks
        return True, value
    return isinstance(value, origin), value


__all__ = ["coerce"]
