"""Flat training loop (nanoGPT style): config and optimizer state live in the checkpoint.

    pixzip train DATA... --out model.pxm [--steps N] ...     (one run; `training.recipe` chains runs)

Float training with quantisation-aware training switched on for the last part of the run, so that the
exported integer model (`training.export`) codes at nearly the float model's bits/dim.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..spec.config import ModelConfig
from .config import TrainConfig
from .data import CropSampler, fixed_crops, load_arrays
from .registry import build_model


def lr_at(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    progress = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
    return tc.lr * (tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model, crops: np.ndarray, batch: int = 32, device: torch.device | None = None) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(crops), batch):
        x = torch.from_numpy(crops[i:i + batch]).to(device or "cpu")
        total += float(model.bits(x)) * len(x)
    model.train()
    return total / len(crops)


def load_weights(model, weights: dict):
    """Load weights. Masks always come from the model's own config (so a checkpoint can start a model
    with another channel structure); activation quantisers may be missing (newer than the checkpoint:
    they observe their range on the first batches)."""
    weights = {k: v for k, v in weights.items() if not k.endswith(".mask")}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:   # shape mismatches
        raise ValueError(f"checkpoint does not fit the model ({str(e).splitlines()[1].strip()})") from None
    bad = [k for k in missing if not k.endswith((".log_scale", ".learned", ".max_abs", ".mask"))] + list(unexpected)
    if bad:
        raise ValueError(f"checkpoint does not fit the model: {', '.join(bad[:5])}")


def grey_view(weights: dict) -> dict:
    """A colour PixelCNN's weights as a grey one's starting point: the first layer and the skip predictor
    read the one channel where they read R, G and B (their weights summed over the input channels), the
    head keeps R's two outputs. The colour network on a grey image repeated in R, G and B predicts R from
    earlier pixels alone; the grey mask drops what its G and B groups read of the current pixel (which its
    trunk then carried on to later pixels), so the copy starts far worse than the colour network's R and
    training must recover it (models/README.md v14: 4.09 bits, 7.02 as a grey network, 4.26 after 300 steps).
    Masked weights are zeroed first (a checkpoint may hold stale values under its masks)."""
    out = {}
    for key, w in weights.items():
        if key.endswith(".mask"):
            continue
        mask = weights.get(key[:-len("weight")] + "mask") if key.endswith(".weight") else None
        w = w if mask is None else w * mask
        if key.startswith(("skip.", "out.")):      # R's rows: the first third (channel-major outputs)
            w = w[:w.shape[0] // 3]
        if key in ("first.weight", "skip.weight"):
            w = w.sum(1, keepdim=True)
        out[key] = w
    return out


def save_checkpoint(path: Path, model, opt, step: int, cfg: ModelConfig, tc: TrainConfig, log: list):
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "model_config": cfg.to_dict(), "train_config": asdict(tc), "log": log,
                "rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


class _Loss(torch.nn.Module):
    """The training loss as a module's forward, so DistributedDataParallel sees the computation."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.bits(x)


def setup_device(device: str) -> tuple[torch.device, int, int]:
    """(device, rank, world size). Under torchrun (WORLD_SIZE > 1) joins the process group: NCCL on
    GPUs, gloo on CPUs; each process takes the GPU of its LOCAL_RANK."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if not cuda:
        return torch.device("cpu"), rank, world
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(dev)
    return dev, rank, world


def train(cfg: ModelConfig, tc: TrainConfig, out: Path, resume: bool = False, progress=None) -> dict:
    """Train (or resume) and return the checkpoint dict written to `out`. Under torchrun every process
    trains on its own crops, gradients are averaged by DistributedDataParallel, rank 0 validates and
    writes the checkpoints."""
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device, rank, world = setup_device(tc.device)
    if tc.minutes and world > 1:    # each process's clock would end it at its own step: a collective hangs
        raise ValueError("--minutes is for single-process training (under torchrun, use --steps)")
    torch.manual_seed(tc.seed)
    state = None
    if resume and out.exists():
        state = load_checkpoint(out)
        cfg = ModelConfig.from_dict(state["model_config"])
        saved = state["train_config"]
        saved.update({k: v for k, v in asdict(tc).items() if k in ("steps",)})
        tc = TrainConfig(**saved)
    model = build_model(cfg).to(device)       # before the optimizer, whose state follows the parameters
    if tc.optimizer == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=tc.lr, alpha=0.95, eps=1e-6)
    elif tc.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(0.9, 0.99))
    else:
        raise ValueError(f"unknown optimizer {tc.optimizer!r}")
    step, log = 0, []
    if state is None and tc.init:
        init = load_checkpoint(Path(tc.init))
        weights = init["model"]
        if ModelConfig.from_dict(init["model_config"]).stream_bits != cfg.stream_bits:
            # another stream width: its quantiser starts afresh (observes, then learns its step)
            weights = {k: v for k, v in weights.items() if not k.startswith("q_stream.")}
        if ModelConfig.from_dict(init["model_config"]).channels == 3 and cfg.channels == 1:
            weights = grey_view(weights)
        load_weights(model, weights)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, log = state["step"], state["log"]
        torch.set_rng_state(state["rng"])

    runner = _Loss(model)
    if world > 1:
        # ActQuant's learned scales join the graph only once QAT starts: unused parameters are expected
        runner = DistributedDataParallel(runner, find_unused_parameters=True)
    # float32 throughout; convolutions in TF32 on CUDA (the models are small: launches, not FLOPs,
    # bound a step, and bf16 would round the residual stream to 8 significant bits)
    torch.backends.cudnn.allow_tf32 = True
    arrays = load_arrays(tc.data, cfg.channels, tc.downsample, tc.jpeg_downsample)
    sampler = CropSampler(arrays, tc.crop, seed=tc.seed + step + 7919 * rank, flip=tc.flip)
    val_arrays = validation_arrays(tc, cfg.channels, arrays)
    val = fixed_crops(val_arrays, tc.crop, tc.val_crops, flip=tc.flip)

    interrupted = []
    old_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
    t0, train_bpd = time.time(), None    # train_bpd: a running mean on the device (read when reported)
    deadline = t0 + 60 * tc.minutes if tc.minutes else None
    pace = (t0, step)            # (time, step) of the last re-fit of the step count to the deadline
    quantized, max_steps = False, tc.steps
    try:
        while step < tc.steps and not interrupted:
            quantized = quantized or step >= tc.qat_start * tc.steps     # once on, it stays on
            model.set_quantize(quantized)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, tc)
            x = torch.from_numpy(sampler.batch(tc.batch)).to(device)
            loss = runner(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
            opt.step()
            step += 1
            if deadline is not None and time.time() >= deadline:
                tc.steps = step          # out of time: this is the last step (validated, checkpointed)
            value = loss.detach()
            train_bpd = value if train_bpd is None else train_bpd.mul_(0.98).add_(value, alpha=0.02)
            if rank == 0 and (step % tc.val_every == 0 or step == tc.steps):
                v = evaluate(model, val, device=device)
                log.append({"step": step, "train_bpd": float(train_bpd), "val_bpd": v, "time": time.time() - t0,
                            "processes": world, "device": device.type})
                save_checkpoint(out, model, opt, step, cfg, tc, log)
                if deadline is not None and step < tc.steps:
                    tc.steps, pace = fit_steps(step, pace, deadline, max_steps), (time.time(), step)
            if progress and rank == 0 and (step % PROGRESS_EVERY == 0 or step == tc.steps):
                progress(step, tc.steps, float(train_bpd), log[-1]["val_bpd"] if log else float("nan"),
                         time.time() - t0)
    finally:
        signal.signal(signal.SIGINT, old_handler)
        if rank == 0:
            save_checkpoint(out, model, opt, step, cfg, tc, log)
    if world > 1:
        dist.barrier()
    return load_checkpoint(out)


def fit_steps(step: int, pace: tuple[float, int], deadline: float, steps: int) -> int:
    """The step count that ends at `deadline` at the pace measured since `pace` = (time, step): the
    learning-rate schedule (and the start of QAT) follow the re-fitted count."""
    t, s = pace
    rate = (step - s) / max(time.time() - t, 1e-9)
    return min(steps, step + max(0, int(rate * (deadline - time.time()))))


def validation_arrays(tc: TrainConfig, channels: int, train_arrays: list | None = None) -> list:
    """The --val images, or else the last tenth of the training images (monitoring only)."""
    if tc.val:
        return load_arrays(tc.val, channels, 1, tc.jpeg_downsample)
    if train_arrays is None:
        train_arrays = load_arrays(tc.data, channels, tc.downsample, tc.jpeg_downsample)
    return train_arrays[-max(1, len(train_arrays) // 10):]


PROGRESS_EVERY = 50    # steps between progress lines (reading the loss waits for the device)


def _print_progress(step, steps, train_bpd, val_bpd, elapsed):
    rate = step / max(elapsed, 1e-9)
    eta = (steps - step) / max(rate, 1e-9)
    print(f"step {step}/{steps}  {rate:.2f} steps/s  train {train_bpd:.3f}  val {val_bpd:.3f} bits/dim  "
          f"eta {eta / 60:.1f} min", file=sys.stderr, flush=True)


def run_training(cfg: ModelConfig, tc: TrainConfig, ckpt: Path, resume: bool, quiet: bool = False) -> dict:
    progress = None if quiet else _print_progress
    return train(cfg, tc, ckpt, resume=resume, progress=progress)


def export_checkpoint(ckpt: Path, out: Path, val_crops: int = 128) -> dict:
    """Export a checkpoint to an integer model file, measuring float and integer bits/dim on the
    validation crops; both figures and the training provenance go into the file."""
    from ..backends.codec import encode_plane       # (the coding path, only for the export's figures)
    from ..nets import modelfile
    from .export import export

    state = load_checkpoint(ckpt)
    cfg = ModelConfig.from_dict(state["model_config"])
    tc = TrainConfig(**state["train_config"])
    model = build_model(cfg)
    load_weights(model, state["model"])
    model.set_quantize(True)
    arrays = validation_arrays(tc, cfg.channels)
    crops = fixed_crops(arrays, tc.crop, val_crops, flip=tc.flip)
    float_bpd = evaluate(model, crops)
    net = export(model)
    # stack the crops into one tall plane whose tiles are exactly the crops
    plane = np.ascontiguousarray(crops.transpose(0, 2, 3, 1).reshape(-1, tc.crop, cfg.channels))
    _, bits = encode_plane(net, plane, tc.crop)
    int_bpd = bits / plane.size
    provenance = {"data": [str(d) for d in tc.data], "val": [str(v) for v in tc.val], "steps": state["step"],
                  "train_seconds": round(state["log"][-1]["time"], 1) if state["log"] else 0,
                  "train_config": state["train_config"], "float_bpd": round(float_bpd, 4),
                  "int_bpd": round(int_bpd, 4), "torch": torch.__version__}
    model_id = modelfile.save(net, out, provenance)
    return {"float_bpd": float_bpd, "int_bpd": int_bpd, "id": model_id}
