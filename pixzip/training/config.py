"""TrainConfig: how a model is trained (stored in every checkpoint beside the ModelConfig), torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    data: list = field(default_factory=list)
    val: list = field(default_factory=list)
    steps: int = 10000
    batch: int = 16
    crop: int = 32
    lr: float = 3e-3
    warmup: int = 200
    min_lr_frac: float = 0.05
    qat_start: float = 0.6      # fraction of steps after which fake quantisation is on
    clip: float = 1.0
    seed: int = 0
    downsample: int = 1
    jpeg_downsample: int = 3
    val_every: int = 250
    val_crops: int = 128
    threads: int = 0
    optimizer: str = "adam"     # or "rmsprop" (the paper's choice)
    init: str = ""              # start from this checkpoint's weights (fine-tuning: new optimizer, schedule)
    flip: bool = True           # random horizontal flips (off for data that is not mirror-symmetric)
    device: str = "auto"        # auto: CUDA when present, else the CPU
    minutes: float = 0          # wall-clock budget: at each validation the step count is re-fitted to it
