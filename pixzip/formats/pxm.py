"""The .pxm model file's bytes: integer tensors, config and provenance. Data only, never code.

Layout (little-endian):
    8 bytes   magic  b"\\x89PXM\\r\\n\\x1a\\n"
    4 bytes   u32 length of the JSON header
    JSON      {"format": 1, "id": sha256 hex, "config": {...}, "layers": {...}, "tensors": [...],
               "provenance": {...}}
    raw       the tensors' bytes, at the offsets the header gives (relative to the end of the header)

The identity `id` is the SHA-256 of the canonical JSON of config, layers and tensor table followed by the
raw bytes: it names exactly the integers that decide probabilities. Provenance is not part of it. A file
whose content does not hash to its stored id is refused (tampering or corruption).

This module knows bytes and numpy arrays only; `nets.record` reads them as a network's integers,
`nets.modelfile` loads and saves model files.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

from ..errors import PixzipError

MAGIC = b"\x89PXM\r\n\x1a\n"
FORMAT = 1
DTYPES = {"int8": np.int8, "int32": np.int32, "int64": np.int64}
MAX_HEADER = 1 << 20


def identity(body: dict, raw: bytes) -> str:
    """The model's identity: SHA-256 of the canonical config, layers and tensor table, then the raw bytes."""
    canon = json.dumps({k: body[k] for k in ("config", "layers", "tensors")}, sort_keys=True,
                       separators=(",", ":")).encode()
    return hashlib.sha256(canon + raw).hexdigest()


def pack(config: dict, layers: dict, tensors: dict[str, np.ndarray], provenance: dict | None = None) -> bytes:
    """The file's bytes for a config, per-layer metadata and named integer arrays (in file order)."""
    table, chunks, offset = [], [], 0
    for name, a in tensors.items():
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        table.append({"name": name, "dtype": str(a.dtype), "shape": list(a.shape), "offset": offset,
                      "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    raw = b"".join(chunks)
    body = {"format": FORMAT, "config": config, "layers": layers, "tensors": table,
            "provenance": provenance or {}}
    body["id"] = identity(body, raw)
    header = json.dumps(body, sort_keys=True).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + raw


def header_id(data: bytes) -> str:
    """The identity stored in a file's header (of bytes `pack` wrote); ValueError or KeyError for
    bytes that are not a model file."""
    if len(data) < 12 or data[:8] != MAGIC:
        raise ValueError("not a pixzip model file")
    return json.loads(data[12:12 + struct.unpack("<I", data[8:12])[0]])["id"]


def file_id(path) -> str:
    """The identity stored in a model file's header, reading the header only (ValueError, KeyError or
    OSError for a file that is not a readable model file)."""
    with open(path, "rb") as f:
        start = f.read(12)
        if len(start) < 12 or start[:8] != MAGIC:
            raise ValueError("not a pixzip model file")
        (hlen,) = struct.unpack("<I", start[8:12])
        if hlen > MAX_HEADER:
            raise ValueError("not a pixzip model file")
        return header_id(start + f.read(hlen))


def unpack(data: bytes, name: str = "model") -> tuple[dict, dict[str, np.ndarray]]:
    """(header, {tensor name: array}) of a model file, its identity verified. PixzipError for anything
    that is not a well-formed model file of this format; KeyError, TypeError, ValueError or
    AttributeError for a header whose entries are malformed (the caller words those)."""
    bad = PixzipError(f"{name}: not a valid pixzip model file")
    if len(data) < 12 or data[:8] != MAGIC:
        raise bad
    (hlen,) = struct.unpack("<I", data[8:12])
    if hlen > MAX_HEADER or 12 + hlen > len(data):
        raise bad
    body = json.loads(data[12:12 + hlen])
    if body["format"] != FORMAT:
        raise PixzipError(f"{name}: model file format {body['format']} is not supported")
    raw = data[12 + hlen:]
    if identity(body, raw) != body["id"]:
        raise PixzipError(f"{name}: model file is corrupted or was modified (hash mismatch)")
    tensors = {}
    for e in body["tensors"]:
        dtype = np.dtype(DTYPES[e["dtype"]])
        count = int(np.prod(e["shape"], dtype=np.int64))
        if e["nbytes"] != count * dtype.itemsize or e["offset"] + e["nbytes"] > len(raw) or e["offset"] < 0:
            raise bad
        arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=count, offset=e["offset"])
        tensors[e["name"]] = arr.astype(dtype).reshape(e["shape"])
    return body, tensors
