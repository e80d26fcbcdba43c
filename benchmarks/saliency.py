"""Seconds of the saliency analysis's core: SmoothGrad of every latent dimension
(5 noisy samples, batched vector-Jacobian products) and the projection into the brain,
for one frozen encoder on random volumes, as the analysis runs it (channels-last,
batch norms folded, sub-pixel stem gradient; ``--plain``: none of these), after one
warm-up chunk, the median chunk extrapolated to ``--target`` subjects.

    python benchmarks/saliency.py --size 64 --subjects 8 --dims 64 --chunk 1
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from bidsfusion.analyses.fast_gradients import fast_input_gradients
from bidsfusion.analyses.saliency import brain_saliency
from bidsfusion.models.dcgan import DCGANEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=1)
    parser.add_argument("--target", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--plain", action="store_true", help="no channels-last, no folding, no sub-pixel"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder = DCGANEncoder((args.size,) * 3, args.dims).to(args.device).eval()
    encoder.requires_grad_(False)
    volumes = torch.randn(args.subjects, 1, *(args.size,) * 3, device=args.device)
    fast = contextlib.nullcontext() if args.plain else fast_input_gradients(encoder)
    with fast:
        first = _timed_chunk(encoder, volumes[: args.chunk], args.device)
        seconds = [
            _timed_chunk(encoder, volumes[start : start + args.chunk], args.device)
            for start in range(0, args.subjects, args.chunk)
        ]
    per_subject = statistics.median(seconds) / args.chunk
    print(
        f"{args.size}^3, {args.dims} dims, 5 samples, {args.device}, "
        f"{'plain' if args.plain else 'fast'}, {torch.get_num_threads()} threads: "
        f"{per_subject:.2f} s per subject and modality (median of {len(seconds)} chunks, "
        f"range {min(seconds) / args.chunk:.2f}-{max(seconds) / args.chunk:.2f}; warm-up "
        f"{first:.1f} s); {args.target} subjects: {per_subject * args.target / 60:.1f} min "
        "per modality"
    )


def _timed_chunk(encoder: DCGANEncoder, volumes: torch.Tensor, device: str) -> float:
    """Seconds of one chunk's saliency maps."""
    started = time.perf_counter()
    brain_saliency(lambda v: encoder(v).latent, volumes)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
