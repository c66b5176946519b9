"""Finding models by name or path. Names are stable: a file names the model it was coded with."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PixzipError
from .formats import pxm

# The model files' reader and the coder are imported where a model is loaded, not with this module:
# `pixzip --help`, `--version` and `info` read names and constants from here without them. Loading a
# model imports no torch either (its numpy record; the torch network is built where a path needs it).
if TYPE_CHECKING:
    from .nets.modelfile import LoadedModel

# Default model per plane channel count. Changing a default never breaks old files: they name theirs.
DEFAULTS = {3: "pcnn-rgb-v8", 1: "pcnn-gray-v4"}
# Images of at most SMALL_MAX_PIXELS pixels (icons, thumbnails, CIFAR-size images) use these when installed.
SMALL_DEFAULTS = {3: "pcnn-rgb-small-v5"}
SMALL_MAX_PIXELS = 64 * 64
# Effort levels (-e): 1 codes with the defaults above; 2 with the strongest shipped model for each plane
# channel count (the first of the list that this installation can code with): for colour,
# `pcnn-rgb-mix-v5`, the equal-weight mixture of `pcnn-rgb-v8`, `pcnn-rgb-large-v7` and `pcnn-rgb-large-v7b` (the
# large network of `pcnn-rgb-small-v5`, about 7x the default's, continued on full-resolution photographs in two
# ways; README, models/README.md v14), which only the native CPU coder runs; without it `pcnn-rgb-large-v7` alone.
# Small images keep the small-image model (CIFAR-10 is what it was trained for). Grey planes have no stronger
# model yet.
EFFORT_MODELS = {2: {3: ("pcnn-rgb-mix-v5", "pcnn-rgb-large-v7")}}
EFFORTS = (1, 2)
SUFFIX = ".pxm"


SHIPPED = Path(__file__).resolve().parent / "models"      # the models that come with pixzip (package data)


def search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("PIXZIP_MODELS", "").split(os.pathsep) if p]
    dirs.append(SHIPPED)
    return dirs


def available() -> dict[str, Path]:
    found = {}
    for d in search_dirs():
        if d.is_dir():
            for f in sorted(d.glob("*" + SUFFIX)):
                found.setdefault(f.stem, f)
    return found


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime: float) -> LoadedModel:
    from .nets.modelfile import load
    return load(Path(path))


def _load(path: Path) -> LoadedModel:
    """A model file, loaded once per path and modification time."""
    return _load_cached(str(path.resolve()), path.stat().st_mtime)


def load_model(spec: str) -> LoadedModel:
    """`spec` is a path to a .pxm file or the name of an installed model."""
    p = Path(spec)
    if p.suffix == SUFFIX or os.sep in spec or p.is_file():
        if not p.is_file():
            raise PixzipError(f"model file not found: {spec}")
    else:
        p = available().get(spec)
        if p is None:
            names = ", ".join(available()) or "none installed"
            raise PixzipError(f"unknown model {spec!r} (available: {names})")
    return _load(p)


def default_model(channels: int, pixels: int | None = None, effort: int = 1) -> LoadedModel:
    """The default model for planes of `channels` at an effort level; for images of at most
    SMALL_MAX_PIXELS pixels the small-image model, when one is installed."""
    if effort not in EFFORTS:
        raise PixzipError(f"effort must be one of {', '.join(map(str, EFFORTS))}")
    small = SMALL_DEFAULTS.get(channels)
    if pixels is not None and pixels <= SMALL_MAX_PIXELS and small in available():
        return load_model(small)
    from .backends import codec
    for name in EFFORT_MODELS.get(effort, {}).get(channels, ()):
        if name in available():
            m = load_model(name)
            if codec.codes_here(m.record):
                return m
    return load_model(DEFAULTS[channels])


def installed_by_id(model_id: str) -> LoadedModel | None:
    """The installed model whose identity starts with `model_id` (a file's prefix), if any. Only a file
    whose header names that identity is loaded (and its content checked against it)."""
    for path in available().values():
        try:
            if not pxm.file_id(path).startswith(model_id):
                continue
            m = _load(path)
        except (OSError, PixzipError, ValueError, KeyError):
            continue
        if m.id.startswith(model_id):
            return m
    return None


def installed_name(model_id: str) -> str:
    """The name of the installed model whose identity starts with `model_id`, or "": read from the
    model files' headers alone (no network is built, nothing imports torch)."""
    for name, path in available().items():
        try:
            if pxm.file_id(path).startswith(model_id):
                return name
        except (OSError, ValueError, KeyError):       # unreadable or not a model file: not this one
            continue
    return ""


def is_shipped(m: LoadedModel) -> bool:
    """Whether m is one of the models that come with pixzip (then files need not name it: any pixzip
    that ships it finds it by identity; a user's own models are named, for the reader's sake)."""
    path = SHIPPED / (m.name + SUFFIX)
    if not path.is_file():
        return False
    try:
        return _load(path).id == m.id
    except (OSError, PixzipError):
        return False


def find_by_id(name: str, model_id: str, extra: list[LoadedModel] = ()) -> LoadedModel:
    """The model a file was coded with, checked by identity (the file holds a prefix of the model's
    SHA-256) before any decoding. A file may leave the name empty: the model is then looked up by
    identity among the installed ones."""
    for m in extra:
        if m.id.startswith(model_id):
            return m
    if not name:
        m = installed_by_id(model_id)
        if m is None:
            raise PixzipError(f"this file needs the model with id {model_id[:16]}, which is not installed "
                              "(a newer pixzip may ship it); pass it with -m PATH")
        return m
    try:
        m = load_model(name)
    except PixzipError:
        raise PixzipError(f"this file needs model {name!r} (id {model_id[:16]}), which is not installed; "
                          "pass it with -m PATH") from None
    if not m.id.startswith(model_id):
        raise PixzipError(f"this file needs model {name!r} with id {model_id[:16]}, but the installed "
                          f"{name!r} has id {m.id[:16]}; pass the right one with -m PATH")
    return m
