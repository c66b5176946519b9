"""The .pxm model file: integer weights, config and provenance. Data only, never code.

Layout (little-endian):
    8 bytes   magic  b"\\x89PXM\\r\\n\\x1a\\n"
    4 bytes   u32 length of the JSON header
    JSON      {"format": 1, "id": sha256 hex, "config": {...}, "layers": {...}, "tensors": [...],
               "provenance": {...}}
    raw       the tensors' bytes, at the offsets the header gives (relative to the end of the header)

The identity `id` is the SHA-256 of the canonical JSON of config, layers and tensor table followed by the
raw bytes: it names exactly the integers that decide probabilities. Provenance is not part of it. A file
whose content does not hash to its stored id is refused (tampering or corruption).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch

from .engine import IntEnsemble, IntModel, QConv, int_model_class
from .errors import PixzipError
from .model import ModelConfig

MAGIC = b"\x89PXM\r\n\x1a\n"
FORMAT = 1
DTYPES = {"int8": torch.int8, "int32": torch.int32, "int64": torch.int64}
MAX_HEADER = 1 << 20


def _conv_entries(name: str, conv: QConv):
    meta = {"k": conv.k, "relu_in": conv.relu_in, "lo": conv.lo, "hi": conv.hi, "groups": conv.groups}
    if conv.taps is not None:
        meta["taps"] = [list(t) for t in conv.taps]
    tensors = {f"{name}.weight": conv.weight, f"{name}.bias": conv.bias,
               f"{name}.mult": conv.mult, f"{name}.shift": conv.shift}
    if conv.weight_low is not None:
        tensors[f"{name}.weight_low"] = conv.weight_low
    return meta, tensors


def _identity(body: dict, raw: bytes) -> str:
    canon = json.dumps({k: body[k] for k in ("config", "layers", "tensors")}, sort_keys=True,
                       separators=(",", ":")).encode()
    return hashlib.sha256(canon + raw).hexdigest()


def serialize(model: IntModel | IntEnsemble, provenance: dict | None = None) -> bytes:
    """The model file's bytes. An ensemble stores its members' layers, heads and tables under the
    prefixes m0., m1., ... and the config {"arch": "ensemble", "members": [their configs]}."""
    layers, tensors = {}, {}
    for name, conv in model.named_convs():
        layers[name], t = _conv_entries(name, conv)
        tensors.update(t)
    parts = list(enumerate(model.members)) if isinstance(model, IntEnsemble) else [(None, model)]
    for k, part in parts:
        prefix = "" if k is None else f"m{k}."
        tensors.update({f"{prefix}head.{n}": v for n, v in part.head.items()})
        tensors.update({f"{prefix}table.{n}": v for n, v in part.tables.items()})
    config = ({"arch": "ensemble", "members": [m.cfg.to_dict() for m in model.members]}
              if isinstance(model, IntEnsemble) else model.cfg.to_dict())
    table, chunks, offset = [], [], 0
    for name, t in tensors.items():
        a = t.contiguous().numpy()
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        table.append({"name": name, "dtype": str(a.dtype), "shape": list(a.shape), "offset": offset,
                      "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    raw = b"".join(chunks)
    body = {"format": FORMAT, "config": config, "layers": layers, "tensors": table,
            "provenance": provenance or {}}
    body["id"] = _identity(body, raw)
    header = json.dumps(body, sort_keys=True).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + raw


def save(model: IntModel, path: Path, provenance: dict | None = None) -> str:
    data = serialize(model, provenance)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return json.loads(data[12:12 + struct.unpack("<I", data[8:12])[0]])["id"]


class LoadedModel:
    """An integer model with its identity, name and provenance."""

    def __init__(self, net: IntModel, model_id: str, name: str, provenance: dict):
        self.net, self.id, self.name, self.provenance = net, model_id, name, provenance

    @property
    def channels(self) -> int:
        return self.net.cfg.channels


def parse(data: bytes, name: str = "model") -> LoadedModel:
    bad = PixzipError(f"{name}: not a valid pixzip model file")
    if len(data) < 12 or data[:8] != MAGIC:
        raise bad
    (hlen,) = struct.unpack("<I", data[8:12])
    if hlen > MAX_HEADER or 12 + hlen > len(data):
        raise bad
    try:
        body = json.loads(data[12:12 + hlen])
        if body["format"] != FORMAT:
            raise PixzipError(f"{name}: model file format {body['format']} is not supported")
        raw = data[12 + hlen:]
        if _identity(body, raw) != body["id"]:
            raise PixzipError(f"{name}: model file is corrupted or was modified (hash mismatch)")
        tensors = {}
        for e in body["tensors"]:
            dtype = DTYPES[e["dtype"]]
            count = int(np.prod(e["shape"], dtype=np.int64))
            itemsize = torch.empty(0, dtype=dtype).element_size()
            if e["nbytes"] != count * itemsize or e["offset"] + e["nbytes"] > len(raw) or e["offset"] < 0:
                raise bad
            arr = np.frombuffer(raw, dtype=np.dtype(e["dtype"]).newbyteorder("<"), count=count,
                                offset=e["offset"])
            tensors[e["name"]] = torch.from_numpy(arr.astype(e["dtype"])).reshape(e["shape"])

        def conv(n):
            m = body["layers"][n]
            taps = m.get("taps")
            return QConv(k=int(m["k"]), weight=tensors[f"{n}.weight"], bias=tensors[f"{n}.bias"],
                         mult=tensors[f"{n}.mult"], shift=tensors[f"{n}.shift"], relu_in=bool(m["relu_in"]),
                         lo=int(m["lo"]), hi=int(m["hi"]), groups=int(m["groups"]),
                         weight_low=tensors.get(f"{n}.weight_low"),
                         taps=None if taps is None else tuple((int(dy), int(dx)) for dy, dx in taps))

        convs = {n: conv(n) for n in body["layers"]}

        def build(config: dict, prefix: str = ""):
            cfg = ModelConfig.from_dict(config)
            part = {n[len(prefix):]: c for n, c in convs.items() if n.startswith(prefix)}
            head = {k[len(prefix) + 5:]: v for k, v in tensors.items() if k.startswith(prefix + "head.")}
            tables = {k[len(prefix) + 6:]: v for k, v in tensors.items() if k.startswith(prefix + "table.")}
            return int_model_class(cfg.arch).from_convs(cfg, part, head, tables)

        if body["config"].get("arch") == "ensemble":
            net = IntEnsemble([build(c, f"m{k}.") for k, c in enumerate(body["config"]["members"])])
        else:
            net = build(body["config"])
    except PixzipError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as e:
        raise PixzipError(f"{name}: not a valid pixzip model file ({type(e).__name__})") from None
    return LoadedModel(net, body["id"], name, body.get("provenance", {}))


def load(path: Path) -> LoadedModel:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PixzipError(f"cannot read model {path}: {e.strerror}") from None
    return parse(data, path.stem)
