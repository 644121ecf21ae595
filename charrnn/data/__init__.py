"""Data: prepared text -> cached ids (cache, encode) -> split and TBPTT batches (batches)."""
