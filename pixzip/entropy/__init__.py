"""The entropy stage: integer frequency tables -> cumulative tables (`tables`) -> coders: the rANS
lanes of format v3 (`rans`, the numpy reference, and `lanes`, their stream framing) and constriction's
range coder of formats v1-v2 (`range_coder`)."""
