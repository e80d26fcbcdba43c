"""Objective terms (critic, InfoNCE, DIM edges, baselines) and their composition."""
