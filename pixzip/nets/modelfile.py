"""Integer networks to and from .pxm model files (`formats.pxm` holds the bytes)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import PixzipError
from ..formats import pxm
from ..formats.pxm import MAGIC  # noqa: F401  (the file's signature, for callers that sniff files)
from ..spec.config import ModelConfig
from .base import IntModel
from .ensemble import IntEnsemble
from .qconv import QConv
from .registry import from_convs


def _conv_entries(name: str, conv: QConv):
    meta = {"k": conv.k, "relu_in": conv.relu_in, "lo": conv.lo, "hi": conv.hi, "groups": conv.groups}
    if conv.taps is not None:
        meta["taps"] = [list(t) for t in conv.taps]
    tensors = {f"{name}.weight": conv.weight, f"{name}.bias": conv.bias,
               f"{name}.mult": conv.mult, f"{name}.shift": conv.shift}
    if conv.weight_low is not None:
        tensors[f"{name}.weight_low"] = conv.weight_low
    return meta, tensors


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
    arrays = {name: t.contiguous().numpy() for name, t in tensors.items()}
    return pxm.pack(config, layers, arrays, provenance)


def save(model: IntModel, path: Path, provenance: dict | None = None) -> str:
    data = serialize(model, provenance)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return pxm.header_id(data)


class LoadedModel:
    """An integer model with its identity, name and provenance."""

    def __init__(self, net: IntModel, model_id: str, name: str, provenance: dict):
        self.net, self.id, self.name, self.provenance = net, model_id, name, provenance

    @property
    def channels(self) -> int:
        return self.net.cfg.channels


def _network(body: dict, tensors: dict[str, torch.Tensor]) -> IntModel | IntEnsemble:
    """The integer network a model file's header and tensors describe."""
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
        return from_convs(cfg, part, head, tables)

    if body["config"].get("arch") == "ensemble":
        return IntEnsemble([build(c, f"m{k}.") for k, c in enumerate(body["config"]["members"])])
    return build(body["config"])


def parse(data: bytes, name: str = "model") -> LoadedModel:
    try:
        body, arrays = pxm.unpack(data, name)
        net = _network(body, {k: torch.from_numpy(a) for k, a in arrays.items()})
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
