"""Seconds of the saliency analysis's core: SmoothGrad of every latent dimension
(5 noisy samples, batched vector-Jacobian products) and the projection into the brain,
for one frozen encoder on random volumes, as the analysis runs it (channels-last,
sub-pixel stem gradient; ``--plain``: without both), extrapolated to ``--target``
subjects.

    python benchmarks/saliency.py --size 64 --subjects 4 --dims 64 --chunk 2
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from bidsfusion.analyses.saliency import brain_saliency
from bidsfusion.analyses.subpixel import fast_input_gradients
from bidsfusion.models.dcgan import DCGANEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=2)
    parser.add_argument("--target", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--plain", action="store_true", help="no channels-last, no sub-pixel")
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder = DCGANEncoder((args.size,) * 3, args.dims).to(args.device).eval()
    encoder.requires_grad_(False)
    volumes = torch.randn(args.subjects, 1, *(args.size,) * 3, device=args.device)
    fast = contextlib.nullcontext() if args.plain else fast_input_gradients(encoder)
    started = time.perf_counter()
    with fast:
        for start in range(0, args.subjects, args.chunk):
            brain_saliency(lambda v: encoder(v).latent, volumes[start : start + args.chunk])
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    per_subject = seconds / args.subjects
    print(
        f"{args.size}^3, {args.dims} dims, 5 samples, {args.device}, "
        f"{'plain' if args.plain else 'fast'}, "
        f"{torch.get_num_threads()} threads: {per_subject:.2f} s per subject and modality; "
        f"{args.target} subjects: {per_subject * args.target / 60:.1f} min per modality"
    )


if __name__ == "__main__":
    main()
