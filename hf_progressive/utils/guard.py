"""The one rule for replacing a folder a user named (`prepare-data --out`, `expand DST`, `compare --out`, `demo --out`,
any `--overwrite`): hf_progressive replaces only its own output (a folder whose entries it recognises as what that
command writes) or an empty folder, and never the filesystem root, the home folder, or a folder that is or holds the
current directory, the recipe or the corpus. Every removal of a user-named path asks `check_replaceable` first, at
the start (before any work) and again right before the removal.

    check_replaceable(Path("out/store"), owned=is_store_folder, what="--out", protected=[recipe_file])
"""

import fcntl
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError


# temp folders and files the library writes beside (or inside) its outputs: `.NAME.tmp-PID-xxxx` (atomic folders),
# `.NAME.tmp` (atomic files), `.NAME.tmp-save` (member staging); a kill leaves them behind
_OWN_TEMP = re.compile(r"^\..+\.tmp(-.*)?$")


def is_own_temp(path: Path) -> bool:
    """Whether `path` is one of the library's temp folders or files (left by an interrupted write)."""
    return bool(_OWN_TEMP.match(path.name))


def protected_places() -> list[tuple[Path, str]]:
    """`(place, what it is)` that no output may ever be or hold: the current directory and the home folder (callers
    add their inputs: `recipe_places`, the source checkpoint)."""
    places = [(Path.cwd(), "the current directory")]
    try:
        places.append((Path.home(), "the home folder"))
    except RuntimeError:  # no HOME and no passwd entry
        pass
    return [(p.resolve(), what) for p, what in places]


def check_replaceable(
    path: str | os.PathLike,
    *,
    owned: Callable[[Path], bool] | None,
    what: str,
    protected: Iterable[tuple[str | os.PathLike, str]] = (),
    kind: str = "output",
) -> None:
    """Refuse, in one line, to replace `path` (named by the user as `what`, e.g. "--out"): the root, a folder that is
    or holds a protected place (home, CWD, `protected`), a file, or a non-empty folder that `owned` does not
    recognise as hf_progressive's `kind`. An absent or empty folder passes (unless protected)."""
    target = Path(path).absolute().resolve()
    if target.parent == target:
        raise CheckpointError(f"{what} {path}: the filesystem root; choose a new folder for the {kind}.")
    places = [*protected_places(), *((Path(p).resolve(), label) for p, label in protected)]
    for place, label in places:
        if place == target or target in place.parents:
            relation = "is" if place == target else "holds"
            raise CheckpointError(f"{what} {path}: {relation} {label} ({place}); choose a new folder for the {kind}.")
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{what} {path}: a file, not a folder; choose a new folder for the {kind}.")
    if target.is_dir() and any(target.iterdir()) and not (owned and owned(target)):
        others = sorted(p.name for p in target.iterdir())
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise CheckpointError(
            f"{what} {path}: holds {len(others)} entries that are not a {kind} of hf_progressive ({shown}); "
            f"choose a new or empty folder (--overwrite replaces only a {kind})."
        )


def only_entries(folder: Path, allowed: Callable[[str], bool]) -> bool:
    """Whether every entry of `folder` is one `allowed` accepts (the library's temp leftovers always are)."""
    return all(allowed(p.name) or is_own_temp(p) for p in folder.iterdir())


def corpus_places(spec) -> list[tuple[Path, str]]:
    """The local files and folders a `DataSpec` reads (globs expanded): no output may be or hold them."""
    import glob

    places = []
    for split in ("train", "validation"):
        source = getattr(spec, split, None)
        if not source or source in ("embedded", "holdout"):
            continue
        for match in glob.glob(source) or ([source] if Path(source).exists() else []):
            places.append((Path(match), f"the corpus (data.{split})"))
    return places


def recipe_places(recipe) -> list[tuple[Path, str]]:
    """The recipe file and its corpus, as `protected` places for `check_replaceable`."""
    source = [(Path(recipe.source), "the recipe")] if getattr(recipe, "source", None) else []
    return source + corpus_places(recipe.data)


@contextmanager
def exclusive(folder: str | os.PathLike, busy: str) -> Iterator[None]:
    """One writer per folder at a time: an exclusive flock on the folder itself (no lock file; the kernel drops it when
    its holder exits or is killed, so it never sticks). A second writer gets `busy` as a one-line error. The folder
    is created here; if it is still empty when the block ends (the work failed early) it is removed again."""
    root = Path(folder)
    created = [p for p in [root, *root.absolute().parents] if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    handle = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(f"{root}: {busy}") from None
        yield
    finally:
        os.close(handle)
        for path in created:  # leave no trace of a failed start: the folders made here, if still empty
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


__all__ = [
    "check_replaceable",
    "corpus_places",
    "exclusive",
    "is_own_temp",
    "only_entries",
    "protected_places",
    "recipe_places",
]
