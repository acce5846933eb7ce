"""Images/s of the cached input pipeline against a plain PIL + torchvision DataLoader, in one run.

Both produce the protocol's training batches (resize, random crop, flip, normalize) of the synthetic
dataset, on --device. Each is warmed up for one epoch (worker start-up, first cache build), then timed
over --epochs epochs; the one-time cache build is reported on its own.

    python bench/bench_data.py --image-size 224 --num-workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from tabulate import tabulate

from wsolbench.data.datasets import open_dataset
from wsolbench.data.pipeline import CachedLoader, DeviceLoader, decoded_bytes
from wsolbench.data.synthetic import SynthParams, cached


def images_per_second(loader, epochs: int, device: torch.device) -> float:
    checksum = torch.zeros((), device=device)
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            checksum += batch["image"][:, 0, 0, 0].sum()  # touch every batch on the device
            count += len(batch["image_id"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224, help="synthetic image and crop size")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=40, help="training images per class")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=os.cpu_count(), help="plain DataLoader workers")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per pipeline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    params = SynthParams(classes=args.classes, train_per_class=args.per_class, image_size=args.image_size)
    start = time.perf_counter()
    root = cached(params)
    generation = time.perf_counter() - start
    dataset = open_dataset(params.folder, root, "train", image_size=args.image_size)

    plain = DeviceLoader(dataset, args.batch_size, device=device, num_workers=args.num_workers)
    images_per_second(plain, 1, device)
    plain_rate = images_per_second(plain, args.epochs, device)

    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        fast = CachedLoader(dataset, args.batch_size, device=device, cache_dir=cache_dir)
        build = time.perf_counter() - start
        images_per_second(fast, 1, device)
        fast_rate = images_per_second(fast, args.epochs, device)

    print(f"{len(dataset)} training images of {args.image_size} px, batch {args.batch_size}, device {device}, "
          f"{os.cpu_count()} CPU cores (dataset ready in {generation:.1f} s)")
    print(tabulate([[f"plain PIL + torchvision DataLoader, {args.num_workers} workers", f"{plain_rate:,.0f}"],
                    ["cached uint8 + crop/flip/normalize on the device", f"{fast_rate:,.0f}"],
                    ["ratio cached / plain", f"{fast_rate / plain_rate:.1f}x"]],
                   headers=["pipeline", "images/s"], colalign=("left", "right")))
    print(f"one-time cache build: {build:.2f} s for {decoded_bytes(dataset) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
