"""The one exception type the CLI turns into a one-line message and exit status 1."""


class PixzipError(Exception):
    """A user-facing error: bad input, corrupt file, missing model. Its message is the whole report."""


# What to install where a path needs torch (the `torch` extra): the integer networks of the reference,
# GPU and LSTM paths, training. The native coder codes the shipped PixelCNNs without it.
TORCH_FIX = "pip install torch==2.13.0 (or pip install 'pixzip[torch]')"


class TorchMissing(PixzipError):
    """Work that needs torch, where it is not installed (the message names the fix)."""


def torch_missing(what: str) -> TorchMissing:
    """The one-line error for work that needs torch where it is not installed."""
    return TorchMissing(f"{what} needs torch, which is not installed: {TORCH_FIX}")
