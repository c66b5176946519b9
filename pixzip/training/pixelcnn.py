"""Float PixelCNN for training, with quantisation-aware training (QAT).

This module knows nothing about entropy coding. It defines the network of the PixelRNN paper's PixelCNN
(a 7x7 mask-A convolution, residual blocks of mask-B convolutions, masked 1x1 output layers, R->G->B
channel groups) and fake-quantises it exactly where the integer engine (`pixzip.nets`) rounds, so that
`pixzip.training.export` can turn it into an integer model that loses almost nothing.

Quantisation points (mirrored one for one by the integer engine):
  * input pixels v in 0..255 enter as the int8 value v-128 (scale 1/128, exact);
  * weights are int8 with one scale per output channel; biases int32;
  * the residual stream has one int8 scale shared by all blocks, so adds are plain integer adds;
  * every other activation is int8 with its own scale, observed during training;
  * the head outputs a location `mu` in 1/16 of a grey level and a log-scale in 1/8 steps (Laplace
    head), or free logits in 1/16 nat (softmax head, the paper's choice).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..spec.config import ModelConfig
from .base import ARModel
from .layers import ActQuant, CondConv, MaskedConv


class PixelCNN(ARModel):
    def build_trunk(self, cfg: ModelConfig):
        h, G = cfg.hidden, cfg.trunk_groups
        self.conv_a = nn.ModuleList(MaskedConv(h, h, cfg.block_kernel, G, "B") for _ in range(cfg.blocks))
        self.conv_b = nn.ModuleList(MaskedConv(h, h, 1, G, "B") for _ in range(cfg.blocks))
        self.q_mid = nn.ModuleList(ActQuant() for _ in range(cfg.blocks))
        if cfg.stream_bits == 16:   # the int8 reads of the 16-bit stream: one per block, then the head
            self.q_read = nn.ModuleList(ActQuant() for _ in range(cfg.blocks + 1))
        if cfg.cond:
            self.upsample = nn.ConvTranspose2d(cfg.channels, cfg.cond, cfg.scale, stride=cfg.scale)
            self.q_cond = ActQuant()
            widths = {"first": h, "head1": cfg.head_hidden}
            widths.update({f"conv_a{b}": h for b in range(cfg.blocks)})
            widths.update({f"conv_b{b}": h for b in range(cfg.blocks)})
            self.cond_convs = nn.ModuleDict({k: CondConv(cfg.cond, w) for k, w in widths.items()})

    def head_input(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        for b, (conv_a, conv_b, q_mid) in enumerate(zip(self.conv_a, self.conv_b, self.q_mid)):
            y = q_mid(F.relu(conv_a(self.relu_read(x, b)) + self.bias(f"conv_a{b}", u)))
            y = self.q_stream(conv_b(y) + self.bias(f"conv_b{b}", u))
            x = self.q_stream(x + y)
        return x

    def relu_read(self, x: torch.Tensor, reader: int) -> torch.Tensor:
        x = F.relu(x)
        return self.q_read[reader](x) if self.cfg.stream_bits == 16 else x
