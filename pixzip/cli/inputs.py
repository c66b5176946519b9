"""The coding commands' many-file handling: inputs expanded (-r) and their outputs placed
(--output-dir), each file's work run with one line per failure, small images batched together, the
options they share, and the -1 ... -9 spelling of -e.

Cheap to import: no torch, no coder."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click

from .. import zoo
from ..errors import PixzipError
from ..formats import images
from .common import SUFFIX, Reporter, progress_bar

# Inputs are coded together until their pixels reach this: small images share one batched pass.
BATCH_PIXELS = 1 << 20


def check_outputs(files, output, stdout, output_dir=None, keep=False, remove_source=False):
    if output and len(files) > 1:
        raise click.UsageError("-o/--output takes a single input")
    if stdout and len(files) > 1:
        raise click.UsageError("-c/--stdout takes a single input")
    if output_dir and (output or stdout):
        raise click.UsageError("--output-dir names outputs by their inputs: not with -o or -c")
    if keep and remove_source:
        raise click.UsageError("-k/--keep and --rm contradict each other")


def image_suffixes() -> set[str]:
    """Every suffix Pillow or pixzip knows for an image format, but .pxz."""
    from PIL import Image
    Image.init()
    return (set(Image.registered_extensions()) | set(images.LOSSLESS_SUFFIXES)) - {SUFFIX}


def expand_inputs(files, recursive: bool, wanted) -> dict[str, str]:
    """Each input -> where its output goes under --output-dir (the file's name, or for files found under
    a folder with -r, the folder's name and the path inside it). -r walks folders, in sorted order, for
    the files whose name `wanted` accepts; without -r a folder stays an input (and is reported)."""
    found: dict[str, str] = {}
    for f in files:
        if recursive and f != "-" and os.path.isdir(f):
            top = Path(f).resolve()
            for p in sorted(top.rglob("*")):
                if p.is_file() and wanted(p.name):
                    found[str(Path(f) / p.relative_to(top))] = str(p.relative_to(top.parent))
        else:
            found[f] = Path(f).name
    return found


def place(dest: str, relative: str, output_dir: str | None) -> str:
    """dest moved under --output-dir, mirroring the input's folders below a folder given with -r."""
    if not output_dir or dest == "-":
        return dest
    return str(Path(output_dir) / Path(relative).parent / Path(dest).name)


def make_parent(dest: str, output_dir: str | None):
    """--output-dir's folders are created when the first file is written into them (never on refusal)."""
    if output_dir and dest != "-":
        Path(dest).parent.mkdir(parents=True, exist_ok=True)


def expand_levels(args: list[str]) -> list[str]:
    """-1 ... -9 -> -e 1 ... -e 9 (gzip/xz/zstd's spelling of levels); after `--` nothing is touched."""
    out = []
    for i, a in enumerate(args):
        if a == "--":
            return out + args[i:]
        out += ["-e", a[1]] if re.fullmatch(r"-[1-9]", a) else [a]
    return out


class LevelAliases(click.Command):
    """A command whose -1 ... -9 mean -e 1 ... -e 9 (the range is checked once, by -e's type)."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, expand_levels(args))


def naming(item, message: str) -> str:
    """An error message that names its file: `item` (an input's path) is put first unless it is there."""
    if isinstance(item, str) and item not in message:
        return f"{'<stdin>' if item == '-' else item}: {message}"
    return message


def run_each(items, rep: Reporter, work, finally_=None, exit_on_failure: bool = True, unit: str = "") -> int:
    """Apply `work` to every item; report failures one line each (naming the file) and keep going; then
    `finally_`. Exit 1 if any failed (unless told not to: then return the number of failures). With a
    `unit` ("files") and several items, a bar counts them."""
    failed = 0

    def attempt(fn, *args):
        nonlocal failed
        try:
            fn(*args)
        except PixzipError as e:
            rep.error(naming(args[0] if args else None, str(e)))
            failed += 1
        except KeyboardInterrupt:
            rep.error("interrupted")
            sys.exit(130)
        except MemoryError:
            rep.error(f"{args[0] if args else ''}: out of memory")
            failed += 1
        except OSError as e:     # e.g. a disk that fills up or a file vanishing mid-run
            rep.error(f"{args[0] if args else ''}: {e.strerror or e}")
            failed += 1

    items = list(items)
    with progress_bar(len(items) if unit and len(items) > 1 else 0, unit, rep.quiet or not unit or len(items) < 2,
                      rep.progress, unit=unit or "px") as advance:
        for item in items:
            attempt(work, item)
            if advance:
                advance(1)
    if finally_ is not None:
        attempt(finally_)
    if failed and exit_on_failure:
        sys.exit(1)
    return failed


class PixelBatch:
    """Collects inputs until their pixels reach BATCH_PIXELS, then hands them to `process` together
    (small images share the coder's batched passes)."""

    def __init__(self, pixels, process):
        self.pixels, self.process, self.items = pixels, process, []

    def add(self, item):
        self.items.append(item)
        if sum(self.pixels(i) for i in self.items) >= BATCH_PIXELS:
            self.flush()

    def flush(self):
        batch, self.items = self.items, []
        if batch:
            self.process(batch)


def model_option(f):
    return click.option("-m", "--model", "model", metavar="NAME|PATH",
                        help="Model for the image's colour (or grey) planes: an installed name or a .pxm file. "
                             f"Default: {zoo.DEFAULTS[3]} for colour ({zoo.SMALL_DEFAULTS[3]} up to "
                             f"{zoo.SMALL_MAX_PIXELS} pixels), {zoo.DEFAULTS[1]} for grey, alpha and palette.")(f)


def input_options(f):
    """Options of every command that takes many files."""
    f = click.option("-r", "--recursive", is_flag=True,
                     help="Folders among the inputs: every file under them that the command takes.")(f)
    f = click.option("--progress", is_flag=True,
                     help="Always show progress bars (by default: on a terminal, for work over 2 s).")(f)
    return f


def output_options(f):
    f = click.option("--output-dir", metavar="DIR",
                     help="Write outputs into DIR (created if needed), under their input's name; with -r, "
                          "a folder's tree is mirrored there.")(f)
    f = click.option("-k", "--keep", is_flag=True, help="Keep the source files (the default; as gzip -k).")(f)
    return f


def common_options(f):
    f = click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")(f)
    f = click.option("-v", "--verbose", count=True, help="More detail (model, ideal bits, timings).")(f)
    f = click.option("-T", "--threads", type=click.IntRange(0), default=0, metavar="N",
                     help="Cores to use: tiles are coded in N threads by the native coder (in worker "
                          "processes on the torch path, for large images); the bytes are the same for "
                          "any N. 0: all cores.")(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where the integer model runs (PixelCNN models on CUDA). auto: the CPU's cores "
                          "(the native coder is the fastest path measured), a GPU only to encode with "
                          "models the native coder does not run. Files are identical whichever is used.")(f)
    return f
