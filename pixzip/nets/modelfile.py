"""Integer networks to and from .pxm model files (`formats.pxm` holds the bytes, `nets.record` the
numpy arrays they load into).

Loading a model builds no network: `LoadedModel.record` is what the native coder packs, torch-free;
`LoadedModel.net`, the torch integer network of the reference, GPU and LSTM paths, is built from the
same arrays on first use (`network`), and needs torch."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PixzipError, torch_missing
from ..formats import pxm
from ..formats.pxm import MAGIC  # noqa: F401  (the file's signature, for callers that sniff files)
from . import record as records
from .record import EnsembleRecord, NetRecord, record_of


def serialize(model, provenance: dict | None = None) -> bytes:
    """The model file's bytes, of a torch integer network or ensemble or of a record."""
    config, layers, arrays = records.to_file(record_of(model))
    return pxm.pack(config, layers, arrays, provenance)


def save(model, path: Path, provenance: dict | None = None) -> str:
    data = serialize(model, provenance)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return pxm.header_id(data)


def network(record: NetRecord | EnsembleRecord, what: str | None = None):
    """The torch integer network (IntModel, IntMultiScale or IntEnsemble) of a record, built once from
    its arrays (no copy). PixzipError in one line, naming the fix, where torch is not installed
    (`what`: what needs it, for that line)."""
    if "network" in record._cache:
        return record._cache["network"]
    try:
        from .ensemble import IntEnsemble
        from .qconv import QConv
        from .registry import from_convs
    except ImportError as e:
        if (e.name or "").split(".")[0] != "torch":
            raise
        arch = "ensemble" if isinstance(record, EnsembleRecord) else record.cfg.arch
        raise torch_missing(what or f"a {arch} model's network") from None
    try:
        if isinstance(record, EnsembleRecord):
            net = IntEnsemble([network(m, what) for m in record.members])
        else:
            net = from_convs(record.cfg, {n: QConv.from_record(c) for n, c in record.convs.items()},
                             _tensors(record.head), _tensors(record.tables))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PixzipError(f"not a valid pixzip model file ({type(e).__name__})") from None
    if hasattr(net, "_cache"):
        net._cache["record"] = record          # the native coder packs these arrays, not a copy
    record._cache["network"] = net
    return net


def _tensors(arrays: dict) -> dict:
    import torch
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


class LoadedModel:
    """A model file's record, with its identity, name and provenance; `net` its torch network."""

    def __init__(self, record: NetRecord | EnsembleRecord, model_id: str, name: str, provenance: dict):
        self.record, self.id, self.name, self.provenance = record, model_id, name, provenance

    @property
    def net(self):
        """The torch integer network (built on first use; needs torch)."""
        return network(self.record, f"the torch network of model {self.name!r}")

    @property
    def channels(self) -> int:
        return self.record.cfg.channels


def parse(data: bytes, name: str = "model") -> LoadedModel:
    try:
        body, arrays = pxm.unpack(data, name)
        record = records.from_file(body, arrays)
    except PixzipError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as e:
        raise PixzipError(f"{name}: not a valid pixzip model file ({type(e).__name__})") from None
    return LoadedModel(record, body["id"], name, body.get("provenance", {}))


def load(path: Path) -> LoadedModel:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PixzipError(f"cannot read model {path}: {e.strerror}") from None
    return parse(data, path.stem)
