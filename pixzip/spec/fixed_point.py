"""Fixed-point formats shared by training, export, the integer engine and the native coder.

These numbers are written, in effect, into every exported model: changing one changes the integers
that decide probabilities, so a model file made with the old value would no longer decode. The C
coder repeats the ones it needs (pixzip/csrc/); tests/test_native.py checks it against the
package's reference integers."""

# The head: location mu, log-scale, logits
MU_FRAC = 16          # mu is coded in 1/16 grey level
LS_FRAC = 8           # log-scale (natural log of the Laplace scale) in steps of 1/8
LS_MIN, LS_MAX = -3.0, 6.0
LOGIT_FRAC = 16       # logits in 1/16 nat

# The frequency tables built from the head
INVB_SHIFT = 14       # Laplace slope table is 2^14 / scale
ROW = 511             # Laplace rows: x - floor(mu) in -255..255
PROB_BITS = 16        # exp table: 2^16 * exp(-k / 16), floor 1

# The LSTM cell of the PixelRNN models
GATE_FRAC = 32        # gate pre-activations in 1/32, table index range [-256, 256)
GATE_RANGE = 256
GATE_ONE = 1 << 15    # sigmoid / tanh values in Q15
CELL_FRAC = 1 << 12   # cell state in Q12
CELL_MAX = 16
H_FRAC = 128          # LSTM output h in 1/128 (int8)
