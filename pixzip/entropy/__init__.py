"""The entropy stage: integer frequency tables -> cumulative tables (`tables`) -> coders: the rANS
lanes of format v3 (`rans`, the numpy reference, and `lanes`, their stream framing), constriction's
range coder of formats v1-v2 (`range_coder`), the 16-bit low parts (`lowbits`), and the adaptive
context-mixing stage driven by the network's prediction (`adaptive`, issue 20; C twin in csrc/adaptive.c)."""
