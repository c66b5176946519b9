"""The integer networks: the single probability path of encoder and decoder.

`qconv` (integer convolutions and requantisation), `canvas` (padded buffers, the decoder's scattered
sites and the encoder's dense runs), `base` (IntModel: what every architecture shares, its head and
frequency tables), one module per architecture (`pixelcnn`, `rnn`, `multiscale`, `ensemble`), the
`registry` that maps an architecture name to its class and `modelfile` (integer network <-> .pxm)."""


