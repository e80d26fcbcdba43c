"""Group-level data: pairs, subject splits, the volume cache, batched transforms."""
