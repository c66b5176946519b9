"""The coding commands: compress, decompress, test and info, and the per-file summaries they print.

Cheap to import: pixzip.api (the coder: torch) is imported inside the commands, so that --help,
--version and info start without it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from .. import efforts, zoo
from ..errors import PixzipError
from ..formats import container, depth, images, metadata, transforms
from .common import (DEFAULT_TILE, SUFFIX, TEXT_TILE, Reporter, progress_bar, read_input, set_device,
                     source_attributes, write_output)
from .inputs import (LevelAliases, PixelBatch, check_outputs, common_options, expand_inputs, image_suffixes,
                     input_options, make_parent, model_option, naming, output_options, place, run_each)


def refuse_image_name(output: str | None):
    """compress -o x.png would write .pxz bytes under an image's name: refused, nothing written."""
    if output and output != "-" and Path(output).suffix.lower() in image_suffixes():
        raise PixzipError(f"{output}: compress writes a .pxz file, not a {Path(output).suffix} image "
                          f"(name it {Path(output).name}{SUFFIX}, or use decompress to write images)")


def ratio(before: int, after: int) -> str:
    return f"{100 * after / before:.2f}%" if before else "-"


@click.command(cls=LevelAliases)
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", metavar="FILE", help="Output file for a single input ('-' for stdout); "
              "an image format's suffix (x.png) is refused.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to standard output.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@model_option
@click.option("--tile", type=click.IntRange(0, 65535), default=None,
              help=f"Tile size in pixels (0: whole image; default {DEFAULT_TILE}, 512 at -e 7..9, or {TEXT_TILE} for a page "
                   "of text: two values, or glyphs that recur). Tiles are coded independently and decode in parallel; "
                   "larger ones compress slightly better (256 against 128: -0.4 % on photos), smaller ones "
                   "decode faster on a GPU or without the native CPU decoder.")
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
                   f"(the ensemble); 4 the adaptive stage (level {efforts.EFFORTS[4].level}); 5 its level "
                   f"{efforts.EFFORTS[5].level}; 6 + transforms by trial "
                   "coding; 7 the ensemble in the stage; 8 + trials; 9 + every trial and the ensemble's static "
                   "coding per plane, the smaller kept. Every level codes a plane with LZMA2 instead where "
                   "that is smaller (long repeats: screenshots, synthetic gradients), after a quick probe "
                   "(6, 8, 9: without it). -m takes precedence over the models an effort picks.")
@input_options
@output_options
@common_options
def compress(files, output, to_stdout, force, model, tile, max_pixels, verify, remove_source, format_version,
             strip, effort, recursive, progress, output_dir, keep, device, threads, verbose, quiet):
    """Compress images (PNG, BMP, TIFF, PNM, lossless WebP...) to FILE.pxz.

    Modes L, LA, RGB, RGBA, P and 1 at 8 bits, and 16-bit grey, RGB and their alpha, are restored
    exactly, at the source's bit depth, with the ICC profile and the metadata (EXIF, XMP, PNG chunks,
    a TIFF's tags, a BMP's resolution; --strip drops them). CMYK, float, 32-bit and multi-frame files
    are refused. A JPEG, lossy WebP or JPEG-compressed TIFF is kept as its decoded pixels (a warning
    says so). The .pxz takes the source's permissions and
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
        metadata.check(image.metadata, name)          # before any coding, and only this file
        if image.lossy:
            rep.say(f"pixzip: {name}: warning: {image.lossy} input: the .pxz holds its decoded pixels, not the "
                    f"{image.lossy} bytes, and is usually larger than the {image.lossy} file")
        for note in image.notes:
            rep.say(f"pixzip: {name}: warning: {note}")
        pending.add((f, name, dest, size, image))

    def code(batch):
        """Code the images of a batch in one pass, then verify, write and report each. If the batch
        fails, each image is coded alone: the failing one is named and the others are written."""
        from .. import api
        preferred = [zoo.load_model(model)] if model else []
        t0 = time.perf_counter()
        total = sum(im.width * im.height * len(im.planes) for *_, im in batch)
        label = batch[0][1] if len(batch) == 1 else f"{len(batch)} images"
        try:
            with progress_bar(total, f"compress {label}", quiet, progress) as bar:
                results = api.compress_many([im for *_, im in batch], preferred, tile, bar,
                                            workers=threads,
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
        from .. import api
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
                   f"{image.width}x{image.height} {image.mode}, {seconds:.2f} s, coded by {_stages_text(container.read_header(data)[0])}")

    pending = PixelBatch(lambda item: item[4].width * item[4].height, code)
    if run_each(inputs, rep, read, finally_=pending.flush, exit_on_failure=False, unit="files") + \
            sum(write_failures):
        sys.exit(1)


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
    from .. import api
    failures = []
    workers = threads

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


@click.command()
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
    from ..backends.codec import coding_threads     # the image writer's threads: the coder's rule (numpy: here, not at import)
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
            encoded = images.encode(image, fmt, strip, threads or coding_threads())
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


@click.command()
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


def _stages_text(h: container.Header, streams: list | None = None) -> str:
    """Each plane's entropy stage, in words (with `streams`: an adaptive plane's stored and LZ tiles too)."""
    kinds = container.tile_kinds(h, streams) if streams is not None else None
    return ", ".join(container.describe_stage(h, p) + (container.describe_tiles(kinds[p]) if kinds else "")
                     for p in range(len(h.planes)))


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Folders among the inputs: every .pxz under them.")
def info(files, recursive):
    """Show a file's header: format version, image, model, entropy stages, size and rate."""
    rep = Reporter(0, False)
    files = expand_inputs(files, recursive, is_pxz_name)

    def work(f):
        data = read_input(f)
        h, offset = container.read_header(data)
        for ref in h.models:             # as api.read_header does, from the model files' headers alone
            ref.name = ref.name or zoo.installed_name(ref.id)
        subpixels = h.subpixels
        record = transforms.TransformRecord.from_bytes(h.transform) if h.transform else transforms.IDENTITY
        width, height = record.original_size(h.width, h.height)
        lines = [
            f"file:            {f}",
            f"format version:  {h.version}",
            f"image:           {width}x{height} {record.original_mode or h.mode}, {h.depth}-bit"
            + (", ICC profile" if h.icc else ""),
            *([f"transforms:      {record.describe()}", f"coded image:     {h.width}x{h.height} {h.mode}"]
              if h.transform else []),
            "metadata:        " + (", ".join(metadata.describe_all(h.metadata)) or "none"),
            *([f"16-bit planes:   {', '.join(depth.describe(s) for s in h.splits)}"] if h.depth == 16 else []),
            "models:          " + ", ".join(f"{m.name or 'not installed'} (id {m.id[:16]})" for m in h.models),
            f"tile:            {h.tile or 'whole image'}",
            "entropy stages:  " + _stages_text(h, container.read_streams(data, h, offset)),
            f"bytes:           {len(data)}",
            f"bits/sub-pixel:  {8 * len(data) / subpixels:.4f}",
            f"model ideal:     {h.model_bits / subpixels:.4f} bits/sub-pixel "
            f"(file {100 * (8 * len(data) / max(h.model_bits, 1e-9) - 1):+.2f}%)",
        ]
        click.echo("\n".join(lines))

    run_each(files, rep, work)
