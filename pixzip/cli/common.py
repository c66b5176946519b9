"""What every command shares: the reporter on stderr, progress bars, the device and thread options'
effect, reading an input and writing an output atomically with its source's attributes.

Cheap to import: no torch, no coder (the commands import those when they run)."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import click

from ..errors import PixzipError
from ..formats import images

SUFFIX = ".pxz"
DEFAULT_TILE = 256       # api.DEFAULT_TILE, without importing the coder (tests/test_conventions.py: equal)
TEXT_TILE = 1024   # plane_options.TEXT_TILE, the same way


class Reporter:
    def __init__(self, verbose: int, quiet: bool, progress: bool = False):
        self.verbose, self.quiet, self.progress = verbose, quiet, progress

    def say(self, msg: str):
        if not self.quiet:
            click.echo(msg, err=True)

    def detail(self, msg: str):
        if self.verbose and not self.quiet:
            click.echo(msg, err=True)

    def error(self, msg: str):
        click.echo(f"pixzip: {msg}", err=True)


@contextmanager
def progress_bar(total: int, desc: str, quiet: bool, forced: bool = False, unit: str = "px"):
    """A bar on stderr, shown on a terminal for work that lasts more than two seconds, or always and at
    once with --progress (forced); -q hides it."""
    if quiet or not (forced or sys.stderr.isatty()):      # no bar: tqdm (~25 ms to import) stays unimported
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        yield None
        return
    with tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "px", delay=0 if forced else 2.0,
              leave=False, file=sys.stderr) as bar:
        yield bar.update


def set_device(device: str, threads: int, decoding: bool = False) -> str:
    """Apply -T and resolve --device. "auto" decodes on the CPU (a GPU decode is ~1 100 sequential
    sub-steps of small kernels whatever the batch: 0.9-1.4 MP/s for batches of 7-18 photos on an
    H100, while the CPU decodes tiles on every core) and leaves encoding to codec.coding_device: a
    GPU only for models the native CPU coder does not run."""
    from ..backends import codec      # imports torch only for --device cuda (or a path that needs it)
    return codec.configure(device, threads, decoding)


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return images.read_bytes(path, path)


def source_attributes(path: str) -> tuple[int, int] | None:
    """(permission bits, modification time in ns) that an output takes from its source, as gzip, xz and
    zstd do; None for standard input."""
    if path == "-":
        return None
    st = os.stat(path)
    return st.st_mode & 0o777, st.st_mtime_ns


def _default_permissions() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_output(dest: str, data: bytes, force: bool, attributes: tuple[int, int] | None = None):
    """Write atomically: a temporary file in the same folder, then a rename (a link when not forcing,
    so that a file created meanwhile by someone else is never clobbered). The file gets `attributes`
    (permission bits, mtime in ns) before it appears, else the permissions a new file would have."""
    if dest == "-":
        if sys.stdout.isatty():
            raise PixzipError("refusing to write binary data to a terminal (use -o FILE or redirect)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(dest)
    if path.exists() and not force:
        raise PixzipError(f"{dest}: already exists (use -f to overwrite)")
    if path.is_dir():
        raise PixzipError(f"{dest}: is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as e:
        raise PixzipError(f"{dest}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, attributes[0] if attributes else _default_permissions())
        if attributes:
            os.utime(tmp, ns=(attributes[1], attributes[1]))
        if force:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path, dest)
            os.unlink(tmp)
    except OSError as e:
        raise PixzipError(f"{dest}: cannot write ({e.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_no_clobber(tmp: str, path: Path, dest: str):
    """Publish tmp under path unless path exists, atomically where the filesystem has hard links."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise PixzipError(f"{dest}: already exists (use -f to overwrite)") from None
    except OSError:  # no hard links here (some network or FUSE filesystems): check, then rename
        if path.exists():
            raise PixzipError(f"{dest}: already exists (use -f to overwrite)") from None
        os.replace(tmp, path)
