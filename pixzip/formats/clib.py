"""The compiled library (pixzip/csrc, built as pixzip._pxnative): where it is and how it loads, once, for
everything that calls into it: the coder (backends/native.py declares its functions) and the 16-bit PNG
reader's row unfiltering (formats/pngio.py). Optional: None where it was not built.

    PIXZIP_NATIVE=0          as if it were not built (the torch engine and pypng instead)
    PIXZIP_NATIVE_LIB=PATH   another build of the same sources (fuzz/sanitized_build.py: a sanitizer
                             build); one that does not load is an error, never a silent fallback
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import sys


@functools.cache
def library() -> ctypes.CDLL | None:
    if os.environ.get("PIXZIP_NATIVE", "1") == "0":
        return None
    chosen = os.environ.get("PIXZIP_NATIVE_LIB")
    spec = None if chosen else importlib.util.find_spec("pixzip._pxnative")
    if not chosen and (spec is None or not spec.origin):
        return None
    try:
        return ctypes.CDLL(chosen or spec.origin)
    except OSError as e:
        if chosen:
            raise
        # built but broken (an undefined symbol, another machine's build): say so once, then code on
        # the torch engine (the same pixels, slower) rather than stop
        print(f"pixzip: the compiled coder does not load ({e}); using the slower torch engine", file=sys.stderr)
        return None
