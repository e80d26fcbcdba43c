"""Encoders, decoders and projection heads (the building layer)."""
