"""The integer spec: every constant and formula that decides a probability, torch-free (numpy at most).

The integer networks (`pixzip.nets`), the float models that train them (`pixzip.training`) and the
native coder all read their fixed-point formats from here; nothing below this package imports torch,
so the coding path can be reasoned about (and, for issue 21, run) without it."""
