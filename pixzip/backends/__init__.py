"""Backends: where the network and the coder run. `codec` is the one door (it alone asks what can run
where); `reference` (torch + numpy, any device), `wavefront` (the decoder's walk), `native` (the C
coder's glue), `gpu` (CUDA graphs and the rANS lanes on the device) and `pool` (worker processes)."""


