"""The tools: train (from options or a recipe), eval, bench and sample.

Cheap to import: torch, the training code and the benchmark's codecs are imported inside the commands."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from .. import efforts, zoo
from ..errors import PixzipError
from ..formats import images
from .common import DEFAULT_TILE, progress_bar, set_device, write_output


# train's options that a recipe may be run with; every other one is the recipe's to set
RECIPE_OPTIONS = {"data", "recipe_file", "runs", "recipe_paths", "dry_run", "resume", "quiet"}


@click.command()
@click.argument("data", nargs=-1)
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Train as a recipe says (models/recipes/*.toml: the model and its chained stages) "
                   "instead of from DATA and the options; only --runs, --path, --dry-run, --resume and -q go with it.")
@click.option("--runs", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="With --recipe: where each stage's checkpoint and model go (the last stage's model is the recipe's).")
@click.option("--path", "recipe_paths", multiple=True, metavar="NAME=VALUE",
              help="With --recipe: fill {NAME} in the recipe's paths (repeatable).")
@click.option("--dry-run", is_flag=True, help="With --recipe: print the stages, train nothing.")
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Exported model (.pxm); required with DATA.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Checkpoint path (default: OUT.ckpt).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint.")
@click.option("--init", "init_from", type=click.Path(dir_okay=False, exists=True),
              help="Start from another checkpoint's weights (fine-tuning: fresh optimizer and schedule; "
                   "its architecture options must match; a colour PixelCNN's may start a --channels 1 one as its grey "
                   "view). From a quantisation-aware checkpoint use "
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
@click.pass_context
def train(ctx, data, recipe_file, runs, recipe_paths, dry_run, out, checkpoint, resume, init_from, arch, small_arch, scale, channels, levels, steps, minutes, batch, crop, hidden, blocks,
          state, first_kernel, row_kernel, residual, skips, slope, stream_bits, channel_deps, head, skip_kernel, qat_start, lr, optimizer, val,
          jpeg_downsample, flip, seed, val_every, device, threads, quiet):
    """Train a model on image folders / .npy stacks (DATA), or as a recipe says (--recipe), and export
    it for coding.

    \b
      pixzip train photos/ --out models/mine.pxm --steps 20000
      pixzip train cifar.npy --arch diagbilstm --layers 4 --hidden 32 --out diag.pxm
      pixzip train --recipe models/recipes/pcnn-rgb-v8.toml --path shared=DIR --runs runs/
      pixzip train --recipe models/recipes/pcnn-gray-v4.toml --dry-run
      pixzip compress img.png -m models/mine.pxm

    Quantisation-aware training runs for the last 40% of the steps; the export reports the float and
    the integer model's bits/dim on the validation crops. Ctrl-C saves a checkpoint (--resume continues).
    A recipe chains its stages, each from the previous one's checkpoint, and exports each into --runs.
    """
    if recipe_file or not data:
        return train_recipe(ctx, data, recipe_file, Path(runs), recipe_paths, dry_run, resume, quiet)
    given = given_options(ctx, lambda name: name in ("runs", "recipe_paths", "dry_run"))
    if given:
        raise click.UsageError(f"{given[0]} goes with --recipe, not with DATA")
    if not out:
        raise click.UsageError("Missing option '--out' (the model trained on DATA is exported there).")
    from ..spec.config import ModelConfig
    from ..training.config import TrainConfig
    from ..training.loop import export_checkpoint, run_training
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


def given_options(ctx, which) -> list[str]:
    """The options of the command that the command line gave (not left at their defaults), of those
    whose name `which` accepts."""
    return [p.opts[0] for p in ctx.command.params
            if which(p.name) and ctx.get_parameter_source(p.name) != click.core.ParameterSource.DEFAULT]


def train_recipe(ctx, data, recipe_file, runs: Path, recipe_paths, dry_run: bool, resume: bool, quiet: bool):
    """`pixzip train --recipe FILE`: usage errors (exit 2) for DATA or a training option beside it, or
    for neither DATA nor a recipe; the recipe's own errors are one line and exit 1."""
    if not recipe_file:
        raise click.UsageError("give DATA (image folders, .npy stacks) or --recipe FILE")
    if data:
        raise click.UsageError("give DATA or --recipe FILE, not both")
    extra = given_options(ctx, lambda name: name not in RECIPE_OPTIONS)
    if extra:
        raise click.UsageError(f"{extra[0]} does not go with --recipe (the recipe sets it)")
    from ..training import recipe
    try:
        paths = recipe.parse_paths(recipe_paths)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        loaded = recipe.load_recipe(Path(recipe_file), paths)
        if dry_run:
            click.echo(recipe.describe(loaded, runs))
            return
        model = recipe.run_recipe(loaded, runs, resume, quiet)
    except (PixzipError, OSError, ValueError) as e:       # tomllib's errors are ValueErrors
        click.echo(f"pixzip: {e}", err=True)
        sys.exit(1)
    click.echo(f"{loaded.name}: the recipe's model is {model}", err=True)


@click.command(name="eval")
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
    from .. import bench as benchmod
    from ..backends.codec import encode_plane
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


@click.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--codecs", default="pixzip,png,webp,jxl7,jxl9", show_default=True,
              help="Comma-separated: pixzip, png, webp, jxl7, jxl9, jpeg2000, jpegls, qoi (all lossless; "
                   "WebP and QOI code grey images as RGB).")
@click.option("-m", "--model", "models", multiple=True, metavar="NAME|PATH", help="Model(s) for pixzip.")
@click.option("--tile", type=click.IntRange(0, 65535), default=None,
              help="pixzip's tile size (default: as `pixzip compress` chooses).")
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

    from .. import bench as benchmod
    try:
        set_device(device, threads)
        loaded = [zoo.load_model(m) for m in models]
        names = [c.strip() for c in codecs.split(",") if c.strip()]
        check_bench_extras(benchmod, names, plot_out)
        imgs = benchmod.load_images(data, grey, limit, parse_slice(items))
        if not imgs:
            raise PixzipError("no images found")
        progress = None if quiet else (lambda c, n: click.echo(f"  {c}: {n}", err=True))
        results = benchmod.run(imgs, names, loaded, tile, progress, workers=threads or 0,
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


@click.command()
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

    from .. import api
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
