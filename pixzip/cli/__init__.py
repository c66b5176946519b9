"""Command line: parse, dispatch, report. All work is done by pixzip.api and pixzip.training.

Conventions follow gzip/zstd: FILE -> FILE.pxz, sources kept, outputs never overwritten without -f,
written atomically, '-' for stdin/stdout, exit 0 on success and 1 on any error (2 for usage errors).

The modules: `coding.py` (compress, decompress, test, info) over `inputs.py` (many files, their
options and summaries) and `common.py` (reporting, devices, atomic outputs); `tools.py` (train, eval,
bench, sample). The commands import the coder (torch) and the training code when they run, never at
start: --help, --version and info start without them (bench/startup.py measures the difference).
"""

from __future__ import annotations

import os
import re
import signal
import sys

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

# the commands import the coder (torch) when they run: these are cheap
from .coding import compress, decompress, info, test  # noqa: E402
from .common import DEFAULT_TILE, SUFFIX, set_device  # noqa: E402
from .inputs import expand_levels  # noqa: E402
from .tools import bench, evaluate, sample, train  # noqa: E402

__all__ = ["main", "DEFAULT_TILE", "SUFFIX", "expand_levels", "set_device"]

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

    def parse_args(self, ctx, args):
        if args and args[0] in COMMAND_ALIASES:
            args = [COMMAND_ALIASES[args[0]], *args[1:]]
        elif args and re.fullmatch(r"-[1-9]", args[0]):      # `pixzip -9 photo.png`
            args = ["compress", *args]
        return super().parse_args(ctx, args)


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
      pixzip train --recipe R.toml        train a model as its recipe says (models/recipes/)
      pixzip eval MODEL DATA...           a model's bits/dim on images
      pixzip sample MODEL -o draw.png     draw (or complete) an image with a model

    \b
    zstd/xz spellings: pixzip -d FILE (decompress), -t (test), -l (info), -1 ... -9 (compress -e N).
    Every file decodes bit-exactly on any machine: the model runs in integers only.
    """
    signal.signal(signal.SIGTERM, _terminate)


for _command in (compress, decompress, test, info, train, evaluate, bench, sample):
    main.add_command(_command)
