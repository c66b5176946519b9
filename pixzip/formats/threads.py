"""The encoder's alternatives computed at once: xz, zlib and numpy's array operations release the GIL, so
threads run them on several cores. Only their results' sizes are compared, so no choice depends on the
thread count."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence


def each(task: Callable, items: Sequence, threads: int) -> list:
    """[task(item) for item in items], in up to `threads` threads (in order)."""
    if threads < 2 or len(items) < 2:
        return [task(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(task, items))
