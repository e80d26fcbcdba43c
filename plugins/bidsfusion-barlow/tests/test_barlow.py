"""The example plugin: its loss, and discovery through the entry point."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from bidsfusion_barlow import barlow_twins


def test_identical_decorrelated_latents_reach_zero():
    z = torch.linalg.qr(torch.randn(256, 8, dtype=torch.float64))[0] * 16
    assert barlow_twins(z, z.clone()).item() < 1e-4


def test_independent_latents_cost_about_d():
    torch.manual_seed(0)
    loss = barlow_twins(torch.randn(4096, 8), torch.randn(4096, 8), off_diagonal_weight=0.0)
    assert abs(loss.item() - 8) < 0.2


def test_entry_point_is_listed_by_bidsfusion_plugins():
    env = {k: v for k, v in os.environ.items() if k != "BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD"}
    listing = subprocess.run(
        [sys.executable, "-m", "bidsfusion", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    block = listing.split("barlow  [", 1)[1].splitlines()
    assert block[0].startswith("bidsfusion-barlow 0.1.0")
    assert "objectives: Barlow" in block[1]
