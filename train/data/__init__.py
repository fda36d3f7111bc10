"""Data: every source layout becomes the same table of per-tier outcomes (`types`), read by one
reader per layout (`readers`, `logs`) and assembled by `load`. Readers depend on the types,
never the other way round."""
