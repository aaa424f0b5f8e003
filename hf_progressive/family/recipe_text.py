"""What a recipe's YAML says, as text: the YAML loader recipes are read with, the fields a recipe writes itself (what
it leaves out may come from a token store or a checkpoint; what it writes must agree), and the first field where two
recipe texts differ (a resume with another recipe names it)."""

import dataclasses
import re

import yaml


class YamlLoader(yaml.SafeLoader):
    """PyYAML (YAML 1.1) reads 3e-3 and 1e6 as strings; users mean numbers (YAML 1.2 agrees)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|"
        + r"^[-+]?(?:[0-9][0-9_]*)\.[0-9_]*$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def written_fields(recipe, section: str | None = None) -> set[str]:
    """The fields `recipe` (or its `section`: "data", "members[0]", ...) writes itself, read from its YAML; for a
    recipe made in code, the fields that differ from their defaults. What a recipe leaves out may come from elsewhere
    (a token store, a pretrained checkpoint); what it writes must agree."""
    try:
        data = yaml.load(recipe.text, Loader=YamlLoader) if recipe.text else None
    except yaml.YAMLError:
        data = None
    obj = recipe
    for part in [] if section is None else section.replace("]", "").replace("[", ".").split("."):
        data = data.get(part) if isinstance(data, dict) else _item(data, part)
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    if isinstance(data, dict):
        return set(data)
    if recipe.text:  # the section is not in the YAML
        return set()
    return {f.name for f in dataclasses.fields(obj) if _differs(getattr(obj, f.name), f)}


def _item(data, index: str):
    return data[int(index)] if isinstance(data, list) and int(index) < len(data) else None


def first_difference(old_text: str | None, new_text: str | None) -> str | None:
    """The first field (a dotted path) whose value differs between two recipe texts, as "path: old -> new", or None
    when they differ only in layout and comments (or cannot be read)."""
    try:
        old, new = (_flat(yaml.load(text or "", Loader=YamlLoader)) for text in (old_text, new_text))
    except yaml.YAMLError:
        return None
    for key in sorted(set(old) | set(new)):
        if old.get(key, "(absent)") != new.get(key, "(absent)"):
            return f"{key}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}"
    return None


def _flat(value, path: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{path}[{i}]").items()}
    return {path: value}


def _differs(value, spec: dataclasses.Field) -> bool:
    if spec.default is not dataclasses.MISSING:
        return value != spec.default
    return spec.default_factory is dataclasses.MISSING or value != spec.default_factory()


__all__ = ["YamlLoader", "first_difference", "written_fields"]
