"""Command line: parse, dispatch, report. All work is done by pixzip.api and pixzip.train.

Conventions follow gzip/zstd: FILE -> FILE.pxz, sources kept, outputs never overwritten without -f,
written atomically, '-' for stdin/stdout, exit 0 on success and 1 on any error (2 for usage errors).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import click


def _terminate_at_startup(signum, frame):
    """SIGTERM while torch is still importing: nothing has been written yet, so leave at once."""
    sys.stderr.write("pixzip: interrupted\n")
    os._exit(130)


_argv0 = sys.argv[0] if sys.argv else ""
if os.path.basename(_argv0) == "pixzip" or _argv0.endswith(os.path.join("pixzip", "__main__.py")):
    try:
        signal.signal(signal.SIGTERM, _terminate_at_startup)    # main() installs the real handler
    except ValueError:    # not the main thread: leave signals alone
        pass

# pixzip.api (the coder: torch) is imported by the commands that code, not here: --help, --version
# and info start without it (bench/startup.py measures the difference).
from . import efforts, zoo  # noqa: E402
from .formats import container, depth, images, metadata  # noqa: E402
from .errors import PixzipError, torch_missing

SUFFIX = ".pxz"
DEFAULT_TILE = 256       # api.DEFAULT_TILE, without importing the coder (tests/test_conventions.py: equal)


# -- helpers ------------------------------------------------------------------------------------------
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
    from .backends import codec      # imports torch only for --device cuda (or a path that needs it)
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


def refuse_image_name(output: str | None):
    """compress -o x.png would write .pxz bytes under an image's name: refused, nothing written."""
    if output and output != "-" and Path(output).suffix.lower() in image_suffixes():
        raise PixzipError(f"{output}: compress writes a .pxz file, not a {Path(output).suffix} image "
                          f"(name it {Path(output).name}{SUFFIX}, or use decompress to write images)")


def ratio(before: int, after: int) -> str:
    return f"{100 * after / before:.2f}%" if before else "-"


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


# zstd/xz/gzip spellings of the commands: `pixzip -d f.pxz` is `pixzip decompress f.pxz`
COMMAND_ALIASES = {"-d": "decompress", "--decompress": "decompress", "--uncompress": "decompress",
                   "-t": "test", "--test": "test", "-l": "info", "--list": "info",
                   "-z": "compress", "--compress": "compress"}


class PixzipGroup(click.Group):
    def invoke(self, ctx):
        """Ctrl-C or SIGTERM outside a file's work (e.g. while a command imports the coder, which now
        happens after start-up): the same one line and exit 130 as during it, not click's 'Aborted!'."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("pixzip: interrupted", err=True)
            sys.exit(130)
        except ModuleNotFoundError as e:       # train, eval, sample without torch (the `torch` extra)
            if (e.name or "").split(".")[0] != "torch":
                raise
            click.echo(f"pixzip: {torch_missing(f'pixzip {ctx.invoked_subcommand}')}", err=True)
            sys.exit(1)

    def parse_args(self, ctx, args):
        if args and args[0] in COMMAND_ALIASES:
            args = [COMMAND_ALIASES[args[0]], *args[1:]]
        elif args and re.fullmatch(r"-[1-9]", args[0]):      # `pixzip -9 photo.png`
            args = ["compress", *args]
        return super().parse_args(ctx, args)


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


def _terminate(signum, frame):
    """SIGTERM behaves like Ctrl-C: the file in progress is abandoned and its temporary output removed."""
    raise KeyboardInterrupt


# -- commands -----------------------------------------------------------------------------------------
@click.group(cls=PixzipGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(None, "-V", "--version", package_name="pixzip", prog_name="pixzip")
def main():
    """pixzip: lossless image compression with an integer-exact PixelCNN.

    \b
      pixzip compress photo.png           -> photo.png.pxz (source kept)
      pixzip decompress photo.png.pxz     -> photo.png
      pixzip test photo.png.pxz           check a file decodes to its checksum
      pixzip info photo.png.pxz           show the header
      pixzip bench DATA...                rates and speeds against PNG, WebP, JPEG XL
      pixzip train DATA... --out m.pxm    train and export a model (then: compress -m m.pxm)
      pixzip eval MODEL DATA...           a model's bits/dim on images
      pixzip sample MODEL -o draw.png     draw (or complete) an image with a model

    \b
    zstd/xz spellings: pixzip -d FILE (decompress), -t (test), -l (info), -1 ... -9 (compress -e N).
    Every file decodes bit-exactly on any machine: the model runs in integers only.
    """
    signal.signal(signal.SIGTERM, _terminate)


@main.command(cls=LevelAliases)
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", metavar="FILE", help="Output file for a single input ('-' for stdout); "
              "an image format's suffix (x.png) is refused.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to standard output.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@model_option
@click.option("--tile", type=click.IntRange(0, 65535), default=DEFAULT_TILE, show_default=True,
              help="Tile size in pixels (0: whole image). Tiles are coded independently and decode in "
                   "parallel; larger ones compress slightly better (256 against 128: -0.4 % on photos), "
                   "smaller ones decode faster on a GPU or without the native CPU decoder.")
@click.option("--max-pixels", type=click.IntRange(1), default=images.DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse inputs with more pixels than this.")
@click.option("--verify", is_flag=True, help="Decode the result and compare before reporting success.")
@click.option("--rm", "remove_source", is_flag=True,
              help="Delete each source once its output is written and verified (implies --verify).")
@click.option("--format-version", type=click.Choice(["2", "3", "4"]), default="4", show_default=True,
              help="File format to write: 4 (v3 plus 16-bit images, bit depths, metadata, transforms and the "
                   "adaptive and stored entropy stages), 3 "
                   "(rANS lanes: faster to encode, and to decode on a GPU; about 0.3 % larger than 2; "
                   "readable by pixzip 0.3; refuses 16-bit images and metadata) or 2 (readable by pixzip 0.2).")
@click.option("--strip", is_flag=True,
              help="Drop the metadata (EXIF, XMP, PNG text and other ancillary chunks); the ICC profile "
                   "and a transparent colour are kept.")
@click.option("-e", "--effort", type=click.IntRange(1, max(efforts.EFFORTS)), default=efforts.DEFAULT_EFFORT,
              show_default=True,
              help="(-1 ... -9 are aliases.) 1-9, faster to smaller (README, Effort levels): 1 the network and static rANS coding; 2 "
                   "+ transforms (grey, palette, levels) by estimate; 3 + the strongest shipped models "
                   "(the ensemble); 4 the adaptive stage level 1; 5 its level 2; 6-8 transforms by trial "
                   "coding; 9 also the ensemble's static coding per plane, the smaller kept. -m takes "
                   "precedence over the models an effort picks.")
@input_options
@output_options
@common_options
def compress(files, output, to_stdout, force, model, tile, max_pixels, verify, remove_source, format_version,
             strip, effort, recursive, progress, output_dir, keep, device, threads, verbose, quiet):
    """Compress images (PNG, BMP, TIFF, PNM, lossless WebP...) to FILE.pxz.

    Modes L, LA, RGB, RGBA, P and 1 at 8 bits, and 16-bit grey, RGB and their alpha, are restored
    exactly, at the source's bit depth, with the ICC profile and the metadata (EXIF, XMP, PNG chunks;
    --strip drops them). CMYK, float, 32-bit and multi-frame files are refused. A JPEG or lossy WebP
    is kept as its decoded pixels (a warning says so). The .pxz takes the source's permissions and
    modification time. Use '-' to read from standard input (the result then goes to standard output).

    \b
    Examples:
      pixzip compress photo.png                 # writes photo.png.pxz
      pixzip compress a.png b.bmp -v            # several files; a failing one does not stop the rest
      pixzip compress photo.png -o out.pxz
      pixzip compress photo.png -e 2            # smaller, slower (-2: the same)
      pixzip compress -r photos/ --output-dir packed/
      cat photo.png | pixzip compress - > photo.pxz
    """
    rep = Reporter(verbose, quiet, progress)
    suffixes = image_suffixes()
    inputs = expand_inputs(files, recursive, lambda name: Path(name).suffix.lower() in suffixes)
    check_outputs(inputs, output, to_stdout, output_dir, keep, remove_source)    # -o: one file, after -r
    write_failures = []

    def read(f):
        set_device(device, threads)
        refuse_image_name(output)
        dest = place(output or ("-" if to_stdout or f == "-" else f + SUFFIX), inputs[f], output_dir)
        if dest != "-" and Path(dest).exists() and not force:
            raise PixzipError(f"{dest}: already exists (use -f to overwrite)")
        name = "<stdin>" if f == "-" else f
        raw = read_input(f) if f == "-" else None
        size = len(raw) if raw is not None else Path(f).stat().st_size if Path(f).is_file() else 0
        image = images.read_image(raw if raw is not None else f, name, max_pixels)
        if strip:
            image.metadata = metadata.strip(image.metadata)
        if image.lossy:
            rep.say(f"pixzip: {name}: warning: {image.lossy} input: the .pxz holds its decoded pixels, not the "
                    f"{image.lossy} bytes, and is usually larger than the {image.lossy} file")
        for note in image.notes:
            rep.say(f"pixzip: {name}: warning: {note}")
        pending.add((f, name, dest, size, image))

    def code(batch):
        """Code the images of a batch in one pass, then verify, write and report each. If the batch
        fails, each image is coded alone: the failing one is named and the others are written."""
        from . import api
        preferred = [zoo.load_model(model)] if model else []
        t0 = time.perf_counter()
        total = sum(im.width * im.height * len(im.planes) for *_, im in batch)
        label = batch[0][1] if len(batch) == 1 else f"{len(batch)} images"
        try:
            with progress_bar(total, f"compress {label}", quiet, progress) as bar:
                results = api.compress_many([im for *_, im in batch], preferred, tile, bar,
                                            workers=threads or os.cpu_count() or 1,
                                            device=set_device(device, threads), version=int(format_version),
                                            effort=effort)
        except PixzipError as e:
            if len(batch) == 1:
                raise PixzipError(naming(batch[0][1], str(e))) from None
            write_failures.append(run_each(batch, rep, lambda item: code([item]), exit_on_failure=False))
            return
        seconds = (time.perf_counter() - t0) / len(batch)
        write_failures.append(run_each(list(zip(batch, results)), rep,
                                       lambda item: finish(*item[0], *item[1], seconds, preferred),
                                       exit_on_failure=False))

    def finish(f, name, dest, size, image, data, stats, seconds, preferred):
        from . import api
        if verify or remove_source:
            decoded, _ = api.decompress(data, preferred, device=set_device(device, threads, decoding=True))
            if decoded.pixel_bytes() != image.pixel_bytes() or decoded.metadata != image.metadata or \
                    decoded.depth != image.depth:  # pragma: no cover - would be a pixzip bug
                raise PixzipError(f"{name}: verification failed, nothing written (please report this)")
        make_parent(dest, output_dir)
        write_output(dest, data, force, None if dest == "-" else source_attributes(f))
        if remove_source and f != "-":
            os.unlink(f)
        done = ", verified" if verify or remove_source else ""
        done += ", source removed" if remove_source and f != "-" else ""
        rep.say(f"{name}: {size} -> {stats.bytes} bytes ({ratio(size, stats.bytes)}), "
                f"{stats.bits_per_subpixel:.3f} bits/sub-pixel -> {'<stdout>' if dest == '-' else dest}{done}")
        rep.detail(f"  model ideal {stats.model_bits_per_subpixel:.3f} bits/sub-pixel "
                   f"(file {100 * (stats.bits_per_subpixel / stats.model_bits_per_subpixel - 1):+.2f}%), "
                   f"{image.width}x{image.height} {image.mode}, {seconds:.2f} s")

    pending = PixelBatch(lambda item: item[4].width * item[4].height, code)
    if run_each(inputs, rep, read, finally_=pending.flush, exit_on_failure=False, unit="files") + \
            sum(write_failures):
        sys.exit(1)


# Inputs are coded together until their pixels reach this: small images share one batched pass.
BATCH_PIXELS = 1 << 20


def decompressed_name(f: str) -> str:
    if not f.endswith(SUFFIX) or len(f) == len(SUFFIX):
        raise PixzipError(f"{f}: unknown suffix, expected {SUFFIX} (use -o to name the output)")
    stripped = f[:-len(SUFFIX)]
    return stripped if images.output_format(stripped) else stripped + ".png"


def is_pxz_name(name: str) -> bool:
    return name.endswith(SUFFIX)


def decode_files(files, rep: Reporter, prepare, finish, model, max_pixels, quiet, threads, device) -> None:
    """Read each file (`prepare(f)` returns what `finish` needs, or raises), decode them in batches that
    share canvases (small files together), then `finish(prepared, data, image)` each. A failing file
    is reported in one line and the rest continue; exit 1 if any failed."""
    from . import api
    failures = []
    workers = threads or os.cpu_count() or 1

    def read(f):
        prepared = prepare(f)
        data = read_input(f)
        try:
            header = api.read_header(data)
        except PixzipError as e:
            raise PixzipError(f"{f}: {e}") from None
        pending.add((f, data, header, prepared))

    def decode(batch):
        extra = [zoo.load_model(model)] if model else []
        total = sum(h.width * h.height * len(h.planes) for _, _, h, _ in batch)
        label = batch[0][0] if len(batch) == 1 else f"{len(batch)} files"
        with progress_bar(total, f"decode {label}", quiet, rep.progress) as bar:
            results = api.decompress_many([d for _, d, _, _ in batch], extra, max_pixels, bar, workers,
                                          set_device(device, threads, decoding=True))

        def done(item):
            (f, data, _, prepared), result = item
            if isinstance(result, PixzipError):
                raise PixzipError(f"{f}: {result}")
            finish(prepared, data, result[0])
        failures.append(run_each(list(zip(batch, results)), rep, done, exit_on_failure=False))

    pending = PixelBatch(lambda item: item[2].width * item[2].height, decode)
    if run_each(files, rep, read, finally_=pending.flush, exit_on_failure=False, unit="files") + sum(failures):
        sys.exit(1)


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", metavar="FILE",
              help="Output image for a single input; its suffix picks a lossless format "
                   "(.png .bmp .tif .webp .ppm/.pgm/.pbm). '-' for stdout (PNG).")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write the image (PNG) to standard output.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-m", "--model", metavar="PATH", help="A model file to use if the file's model is not installed.")
@click.option("--max-pixels", type=click.IntRange(1), default=images.DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse files that claim more pixels than this.")
@click.option("--strip", is_flag=True,
              help="Write no metadata (EXIF, XMP, PNG chunks), e.g. to write a format that cannot hold "
                   "them; the ICC profile and a transparent colour are kept.")
@click.option("--rm", "remove_source", is_flag=True,
              help="Delete each .pxz once its image is written (it decoded to its checksum).")
@input_options
@output_options
@common_options
def decompress(files, output, to_stdout, force, model, max_pixels, strip, remove_source, recursive, progress,
               output_dir, keep, device, threads, verbose, quiet):
    """Decompress FILE.pxz to FILE (PNG unless the name or -o asks for another lossless format).

    Several small files are decoded together (their tiles share the decoder's steps)."""
    rep = Reporter(verbose, quiet, progress)
    inputs = expand_inputs(files, recursive, is_pxz_name)
    check_outputs(inputs, output, to_stdout, output_dir, keep, remove_source)    # -o: one file, after -r

    def prepare(f):
        set_device(device, threads)
        dest = place(output or ("-" if to_stdout or f == "-" else decompressed_name(f)), inputs[f], output_dir)
        if dest != "-" and Path(dest).exists() and not force:
            raise PixzipError(f"{dest}: already exists (use -f to overwrite)")
        fmt = "PNG" if dest == "-" else images.output_format(dest)
        if fmt is None:
            raise PixzipError(f"{dest}: unknown or lossy output format (use .png, .bmp, .tif, .webp, .ppm)")
        return f, dest, fmt

    def finish(prepared, data, image):
        f, dest, fmt = prepared
        attributes = None if f == "-" or dest == "-" else source_attributes(f)
        try:
            encoded = images.encode(image, fmt, strip)
        except PixzipError as e:
            raise PixzipError(f"{dest}: {e}") from None
        make_parent(dest, output_dir)
        write_output(dest, encoded, force, attributes)
        if remove_source and f != "-":
            os.unlink(f)
        rep.say(f"{'<stdin>' if f == '-' else f}: {len(data)} -> {len(encoded)} bytes ({ratio(len(encoded), len(data))}), "
                f"{image.width}x{image.height} {image.mode} -> {'<stdout>' if dest == '-' else dest}"
                + (", source removed" if remove_source and f != "-" else ""))

    decode_files(inputs, rep, prepare, finish, model, max_pixels, quiet, threads, device)


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-m", "--model", metavar="PATH", help="A model file to use if the file's model is not installed.")
@input_options
@common_options
def test(files, model, recursive, progress, device, threads, verbose, quiet):
    """Decode each file and check it against its checksum; write nothing. Exit 1 if any fails."""
    rep = Reporter(verbose, quiet, progress)
    files = expand_inputs(files, recursive, is_pxz_name)

    def prepare(f):
        set_device(device, threads)
        return f

    decode_files(files, rep, prepare, lambda f, data, image: rep.say(f"{f}: OK"), model, None, quiet, threads,
                 device)


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Folders among the inputs: every .pxz under them.")
def info(files, recursive):
    """Show a file's header: format version, image, model, size and rate."""
    rep = Reporter(0, False)
    files = expand_inputs(files, recursive, is_pxz_name)

    def work(f):
        data = read_input(f)
        h = container.read_header(data)[0]
        for ref in h.models:             # as api.read_header does, from the model files' headers alone
            ref.name = ref.name or zoo.installed_name(ref.id)
        subpixels = h.subpixels
        lines = [
            f"file:            {f}",
            f"format version:  {h.version}",
            f"image:           {h.width}x{h.height} {h.mode}, {h.depth}-bit" + (", ICC profile" if h.icc else ""),
            "metadata:        " + (", ".join(metadata.describe_all(h.metadata)) or "none"),
            *([f"16-bit planes:   {', '.join(depth.describe(s) for s in h.splits)}"] if h.depth == 16 else []),
            "models:          " + ", ".join(f"{m.name or 'not installed'} (id {m.id[:16]})" for m in h.models),
            f"tile:            {h.tile or 'whole image'}",
            f"bytes:           {len(data)}",
            f"bits/sub-pixel:  {8 * len(data) / subpixels:.4f}",
            f"model ideal:     {h.model_bits / subpixels:.4f} bits/sub-pixel "
            f"(file {100 * (8 * len(data) / max(h.model_bits, 1e-9) - 1):+.2f}%)",
        ]
        click.echo("\n".join(lines))

    run_each(files, rep, work)


@main.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Exported model (.pxm).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Checkpoint path (default: OUT.ckpt).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint.")
@click.option("--init", "init_from", type=click.Path(dir_okay=False, exists=True),
              help="Start from another checkpoint's weights (fine-tuning: fresh optimizer and schedule; "
                   "its architecture options must match). From a quantisation-aware checkpoint use "
                   "--qat-start 0: its learned activation scales go stale during a float phase (measured: "
                   "+0.2 bits/dim when QAT resumed after 8 400 float steps).")
@click.option("--arch", type=click.Choice(["pixelcnn", "rowlstm", "diagbilstm", "multiscale"]), default="pixelcnn",
              show_default=True, help="PixelCNN (masked convolutions), Row LSTM, Diagonal BiLSTM, or multi-scale "
                                      "(a --small-arch model for the subsampled image, then a conditional PixelCNN).")
@click.option("--small-arch", type=click.Choice(["pixelcnn", "rowlstm", "diagbilstm"]), default="pixelcnn",
              show_default=True, help="Multi-scale: the model of the subsampled image.")
@click.option("--scale", type=click.IntRange(2), default=2, show_default=True,
              help="Multi-scale: subsampling factor (every scale-th pixel of every scale-th row).")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True)
@click.option("--levels", type=click.Choice(["256", "2"]), default="256", show_default=True,
              help="256 for 8-bit images, 2 for bilevel images (mode 1; needs --head softmax).")
@click.option("--steps", type=click.IntRange(1), default=10000, show_default=True)
@click.option("--minutes", type=click.FloatRange(0), default=0, show_default=True,
              help="Wall-clock budget: at every validation the step count (and with it the learning-rate "
                   "schedule) is re-fitted so that training ends in time; --steps is then the most it runs. "
                   "Single-process training only.")
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True)
@click.option("--crop", type=click.IntRange(4), default=32, show_default=True)
@click.option("--hidden", type=click.IntRange(3), default=48, show_default=True,
              help="Width of the residual stream between layers (the paper's 2h).")
@click.option("--blocks", "--layers", "blocks", type=click.IntRange(0), default=4, show_default=True,
              help="Residual blocks (PixelCNN) or LSTM layers.")
@click.option("--state", type=click.IntRange(0), default=0,
              help="LSTM state width h (default: hidden / 2).")
@click.option("--first-kernel", type=click.IntRange(1), default=7, show_default=True,
              help="Size of the mask-A first convolution.")
@click.option("--row-kernel", type=click.IntRange(3), default=3, show_default=True,
              help="Row LSTM: k of the k x 1 input-to-state and state-to-state convolutions.")
@click.option("--residual/--no-residual", default=True, show_default=True,
              help="Residual connections around LSTM layers.")
@click.option("--skips/--no-skips", default=False, show_default=True,
              help="Skip connections from every LSTM layer to the output.")
@click.option("--stream-bits", type=click.Choice(["8", "16"]), default="8", show_default=True,
              help="PixelCNN residual stream precision: 16 keeps the stream in int16 and requantises each "
                   "ReLU'd read of it to int8 (measured: the int8 stream cost 0.17 bits/dim on the RGB model).")
@click.option("--slope", type=click.IntRange(0), default=0, show_default=True,
              help="PixelCNN decode wavefront slope: 2 trims the first layer's far upper-right taps so a "
                   "128-pixel tile decodes in 382 sequential steps instead of 636 (0: the kernels' own).")
@click.option("--channel-deps", type=click.Choice(["masks", "skip"]), default="masks", show_default=True,
              help="masks: the paper's R/G/B groups through every layer; skip: one spatial trunk for the "
                   "pixel (decoded once per pixel, not once per channel: faster) and the earlier channels "
                   "reach the later ones through the linear predictor of mu (needs --skip-kernel).")
@click.option("--head", type=click.Choice(["laplace", "softmax"]), default="laplace", show_default=True,
              help="laplace: mu and scale over the 256 values (learns fast); softmax: the paper's free logits.")
@click.option("--skip-kernel", type=click.IntRange(0), default=5, show_default=True,
              help="Laplace head: size of the full-precision linear predictor from the image to mu (0: none).")
@click.option("--qat-start", type=click.FloatRange(0, 1), default=0.6, show_default=True,
              help="Fraction of the steps after which quantisation-aware training is on.")
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop"]), default="adam", show_default=True,
              help="Adam, or RMSProp as in the paper.")
@click.option("--val", multiple=True, help="Validation data (folders or .npy); default: 10% of DATA.")
@click.option("--jpeg-downsample", type=click.IntRange(1), default=3, show_default=True,
              help="Box-downsample JPEG sources by this factor to wash out their artefacts.")
@click.option("--flip/--no-flip", default=True, show_default=True,
              help="Random horizontal flips of the training crops (off for e.g. digits).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-every", type=click.IntRange(1), default=250, show_default=True,
              help="Validate and checkpoint every N steps.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train: auto takes CUDA (float32, TF32 convolutions) when present. Several GPUs or "
                   "processes: launch with torchrun --nproc_per_node N -m pixzip train ...")
@click.option("-T", "--threads", type=click.IntRange(0), default=0)
@click.option("-q", "--quiet", is_flag=True)
def train(data, out, checkpoint, resume, init_from, arch, small_arch, scale, channels, levels, steps, minutes, batch, crop, hidden, blocks,
          state, first_kernel, row_kernel, residual, skips, slope, stream_bits, channel_deps, head, skip_kernel, qat_start, lr, optimizer, val,
          jpeg_downsample, flip, seed, val_every, device, threads, quiet):
    """Train a model on image folders / .npy stacks and export it for coding.

    \b
      pixzip train photos/ --out models/mine.pxm --steps 20000
      pixzip train cifar.npy --arch diagbilstm --layers 4 --hidden 32 --out diag.pxm
      pixzip compress img.png -m models/mine.pxm

    Quantisation-aware training runs for the last 40% of the steps; the export reports the float and
    the integer model's bits/dim on the validation crops. Ctrl-C saves a checkpoint (--resume continues).
    """
    from .spec.config import ModelConfig
    from .training.config import TrainConfig
    from .training.loop import export_checkpoint, run_training
    try:
        lstm = arch != "pixelcnn"
        cfg = ModelConfig(arch=arch, channels=int(channels), levels=int(levels), hidden=hidden, head_hidden=hidden,
                          blocks=0 if lstm else blocks, layers=blocks if lstm else 0, state=state,
                          first_kernel=first_kernel, row_kernel=row_kernel, residual=residual, skips=skips,
                          head=head, skip_kernel=min(skip_kernel, first_kernel) if head == "laplace" else 0,
                          small_arch=small_arch, scale=scale, stream_bits=int(stream_bits), slope=slope,
                          channel_deps=channel_deps)
        tc = TrainConfig(data=list(data), val=list(val), steps=steps, minutes=minutes, batch=batch, crop=crop, lr=lr,
                         jpeg_downsample=jpeg_downsample, seed=seed, threads=threads, qat_start=qat_start,
                         val_every=val_every, optimizer=optimizer, init=init_from or "", flip=flip, device=device)
        ckpt = Path(checkpoint or out + ".ckpt")
        run_training(cfg, tc, ckpt, resume, quiet)
        if int(os.environ.get("RANK", "0")) != 0:      # torchrun: rank 0 exports
            return
        report = export_checkpoint(ckpt, Path(out))
    except (PixzipError, ValueError, FileNotFoundError) as e:
        click.echo(f"pixzip: {e}", err=True)
        sys.exit(1)
    click.echo(f"exported {out}: float {report['float_bpd']:.4f}, integer {report['int_bpd']:.4f} bits/dim "
               f"on validation crops (id {report['id'][:16]})", err=True)


@main.command(name="eval")
@click.argument("model")
@click.argument("data", nargs=-1, required=True)
@click.option("--tile", type=click.IntRange(0, 65535), default=DEFAULT_TILE, show_default=True)
@click.option("--limit", type=click.IntRange(0), default=0, help="Use only the first N images.")
@click.option("--items", default=":", show_default=True, metavar="A:B",
              help="Rows of .npy stacks to use, Python slice style (e.g. -1000: for the last 1000).")
@click.option("-T", "--threads", type=click.IntRange(0), default=0, metavar="N")
def evaluate(model, data, tile, limit, items, threads):
    """Bits/dim of MODEL (name or .pxm) on DATA: the integer model's ideal code length and the real
    coded size (each image, or each .npy item, as its own tiled plane; no file header counted)."""
    from . import bench as benchmod
    from .backends.codec import encode_plane
    try:
        set_device("cpu", threads)
        m = zoo.load_model(model)
        imgs = benchmod.load_images(data, grey=m.channels == 1, limit=limit, items=parse_slice(items))
        if not imgs:
            raise PixzipError("no images found")
        ideal = coded = dims = 0
        for _, a in imgs:
            streams, bits = encode_plane(m.net, a, tile)
            ideal += bits
            coded += 32 * sum(s.size for s in streams)
            dims += a.size
    except (PixzipError, FileNotFoundError) as e:
        click.echo(f"pixzip: {e}", err=True)
        sys.exit(1)
    prov = m.provenance
    click.echo(f"{m.name}: {len(imgs)} images, integer model {ideal / dims:.4f} bits/dim, "
               f"coded streams {coded / dims:.4f} bits/dim"
               + (f" (export: float {prov['float_bpd']}, integer {prov['int_bpd']} on validation crops)"
                  if "float_bpd" in prov else ""))


@main.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--codecs", default="pixzip,png,webp,jxl7,jxl9", show_default=True,
              help="Comma-separated: pixzip, png, webp, jxl7, jxl9, jpeg2000, jpegls, qoi (all lossless; "
                   "WebP and QOI code grey images as RGB).")
@click.option("-m", "--model", "models", multiple=True, metavar="NAME|PATH", help="Model(s) for pixzip.")
@click.option("--tile", type=click.IntRange(0, 65535), default=DEFAULT_TILE, show_default=True)
@click.option("--grey", "--gray", "grey", is_flag=True, help="Convert every image to grey (L) first.")
@click.option("--limit", type=click.IntRange(0), default=0, help="Use only the first N images.")
@click.option("--items", default=":", show_default=True, metavar="A:B",
              help="Rows of .npy stacks to use, Python slice style (e.g. -1000: for the last 1000).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write all figures as JSON.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False),
              help="Write a PNG plot of rate against decode speed (needs matplotlib).")
@click.option("-T", "--threads", type=click.IntRange(0), default=0, metavar="N")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where pixzip's integer model encodes and decodes (the other codecs use the CPU).")
@click.option("-e", "--effort", type=click.IntRange(1, max(efforts.EFFORTS)), default=efforts.DEFAULT_EFFORT,
              show_default=True, help="pixzip's effort level (as for compress).")
@click.option("-q", "--quiet", is_flag=True)
def bench(data, codecs, models, tile, grey, limit, items, json_out, plot_out, threads, device, effort, quiet):
    """Rates and speeds against PNG, WebP and JPEG XL, all measured in this run on the same images.

    DATA are image folders and .npy stacks (each array item is coded as its own file). Every round trip
    is checked. Prints a Markdown table; --json keeps everything, per image too.

    \b
    Example:
      pixzip bench ../shared/data/cbsd68 --json cbsd68.json
      pixzip bench photos/ --codecs pixzip,jxl7 --device cuda
    """
    import platform

    from . import bench as benchmod
    try:
        set_device(device, threads)
        loaded = [zoo.load_model(m) for m in models]
        names = [c.strip() for c in codecs.split(",") if c.strip()]
        check_bench_extras(benchmod, names, plot_out)
        imgs = benchmod.load_images(data, grey, limit, parse_slice(items))
        if not imgs:
            raise PixzipError("no images found")
        progress = None if quiet else (lambda c, n: click.echo(f"  {c}: {n}", err=True))
        results = benchmod.run(imgs, names, loaded, tile, progress, workers=threads or os.cpu_count() or 1,
                               device=None if device == "cpu" else device, effort=effort)
        if plot_out:
            benchmod.plot(results, Path(plot_out), f"{', '.join(data)}: {len(imgs)} images")
    except (PixzipError, FileNotFoundError) as e:
        click.echo(f"pixzip: {e}", err=True)
        sys.exit(1)
    click.echo(benchmod.markdown(results))
    if json_out:
        import torch
        meta = {"data": list(data), "items": items, "images": len(imgs), "grey": grey, "tile": tile,
                "models": list(models), "device": device, "effort": effort,
                "machine": platform.machine(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        benchmod.write_json(results, Path(json_out), meta)


@main.command()
@click.argument("model")
@click.option("-o", "--output", required=True, metavar="FILE", help="Output image (PNG, or by suffix).")
@click.option("--size", default="32x32", show_default=True, metavar="HxW", help="Image size.")
@click.option("--complete", "complete_path", metavar="IMAGE",
              help="Keep the top --rows rows of IMAGE and draw the rest (at IMAGE's size).")
@click.option("--rows", type=click.IntRange(0), default=0, help="Rows of --complete kept.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
def sample(model, output, size, complete_path, rows, seed, force):
    """Draw an image from MODEL, or complete the lower part of an image.

    Sampling runs the decoder with random draws in place of the entropy decoder: the same integer
    engine, the same wavefront schedule.

    \b
    Examples:
      pixzip sample pcnn-rgb-v1 --size 64x64 -o draw.png
      pixzip sample pcnn-rgb-v1 --complete photo.png --rows 100 -o completed.png
    """
    import numpy as np
    from PIL import Image

    from . import api
    try:
        m = zoo.load_model(model)
        complete = None
        if complete_path:
            with Image.open(complete_path) as im:
                complete = np.asarray(im.convert("RGB" if m.channels == 3 else "L"))
            complete = complete if complete.ndim == 3 else complete[..., None]
            h, w = complete.shape[:2]
        else:
            try:
                h, w = (int(v) for v in size.lower().split("x"))
            except ValueError:
                raise PixzipError(f"--size {size!r}: expected HxW, e.g. 64x64") from None
            if not (0 < h * w <= 1 << 22):
                raise PixzipError("--size: between 1 and 4 megapixels")
        fmt = images.output_format(output)
        if fmt is None:
            raise PixzipError(f"{output}: unknown or lossy output format (use .png, .bmp, .tif, .webp, .ppm)")
        with progress_bar(h * w, "sample", False) as bar:
            a = api.sample(m, h, w, seed, complete, rows, bar)
        im = Image.fromarray(a if a.shape[2] == 3 else a[..., 0])
        write_output(output, images.encode_image_file(im, fmt), force)
    except (PixzipError, OSError) as e:
        click.echo(f"pixzip: {e}", err=True)
        sys.exit(1)


def check_bench_extras(benchmod, names: list[str], plot_out) -> None:
    """Before any image is coded: each codec asked for can be built (those of imagecodecs need the
    [bench] extra), and --plot finds matplotlib; else one line naming the extra, not a failure at the end."""
    import importlib.util
    table = benchmod.codec_table()
    for name in names:
        if name in table:          # an unknown name is reported by bench.run, with the known ones
            table[name]()
    if plot_out and importlib.util.find_spec("matplotlib") is None:
        raise PixzipError(f"{plot_out}: --plot needs matplotlib (pip install 'pixzip[bench]')")


def parse_slice(text: str) -> slice:
    try:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
        if len(parts) != 2:
            raise ValueError
    except ValueError:
        raise PixzipError(f"--items {text!r}: expected A:B, e.g. -1000:") from None
    return slice(*parts)


if __name__ == "__main__":  # pragma: no cover
    main()
