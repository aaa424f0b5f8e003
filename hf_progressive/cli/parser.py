"""Command-line parsing derived from the argument dataclasses, with the standard library's argparse: the same flags
HfArgumentParser derives (`--max_steps_per_stage` and `--max-steps-per-stage`, `--flag [true|false]`, `--no-flag` for
a flag that defaults to true, `nargs="+"` lists), kept here because importing transformers for it costs seconds on
every `--help` and every mistyped option. Errors are one line, with the closest known option."""

import argparse
import dataclasses
import difflib
import types
import typing

from ..errors import HfProgressiveError


class UsageError(HfProgressiveError):
    """A command line argparse refused (unknown or malformed option): printed as one line, exit 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser over dataclasses whose errors are one line (with the closest known option)."""

    def __init__(self, dataclass_types, **kwargs):
        super().__init__(**kwargs)
        self.dataclass_types = (
            list(dataclass_types) if isinstance(dataclass_types, list | tuple) else [dataclass_types]
        )
        for cls in self.dataclass_types:
            hints = typing.get_type_hints(cls)
            for spec in dataclasses.fields(cls):
                if spec.init:
                    _add(self, spec, hints[spec.name])

    def error(self, message: str):
        unknown = [w for w in message.split() if w.startswith("--")] if message.startswith("unrecognized") else []
        known = [option for action in self._actions for option in action.option_strings]
        close = difflib.get_close_matches(unknown[0], known, n=1) if unknown else []
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"{message}{hint}; see {self.prog} --help")

    def parse_args_into_dataclasses(self, args: list[str]) -> tuple:
        """`(*dataclass instances, namespace of the other arguments, unknown strings)`."""
        namespace, rest = self.parse_known_args(args)
        values = vars(namespace)
        built = []
        for cls in self.dataclass_types:
            names = {spec.name for spec in dataclasses.fields(cls) if spec.init}
            built.append(cls(**{name: values.pop(name) for name in names if name in values}))
        return (*built, argparse.Namespace(**values), rest)


def _to_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _add(parser: argparse.ArgumentParser, spec: dataclasses.Field, kind) -> None:
    options = [f"--{spec.name}"] + ([f"--{spec.name.replace('_', '-')}"] if "_" in spec.name else [])
    kwargs = {k: v for k, v in spec.metadata.items()}
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        kind = args[0]
    required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
    default = None if required else spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
    kwargs.update(dest=spec.name, default=default, required=required)
    if kind is bool:
        kwargs.update(type=_to_bool, nargs="?", const=True)
    elif typing.get_origin(kind) is list:
        kwargs.update(type=(typing.get_args(kind) or (str,))[0], nargs="+")
    else:
        kwargs.update(type=kind)
    parser.add_argument(*options, **kwargs)
    if kind is bool and spec.default is True:
        negatives = [f"--no_{spec.name}", f"--no-{spec.name.replace('_', '-')}"]  # as HfArgumentParser: both
        parser.add_argument(*negatives, action="store_false", dest=spec.name, help=f"Turn off --{spec.name}.")


__all__ = ["Parser", "UsageError"]
