"""Training images/s: fp32 vs AMP + channels_last, model-only steps vs end to end, in one run.

For each backbone: (1) model-only steps on a fixed on-device batch, fp32 then AMP (bf16 where supported,
else fp16 with a gradient scaler) + channels_last; (2) end to end through the cached input pipeline on the
synthetic dataset at --image-size, with AMP + channels_last. It prints images/s and the ratios AMP/fp32 and
end-to-end/model-only (the share of time the input pipeline keeps the device busy).

    python bench/bench_train.py --device cuda --backbones vgg16 resnet50 --batch-size 64 --image-size 224
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time

import torch
import torch.nn.functional as F
from tabulate import tabulate

from wsolbench.backbones import create_backbone
from wsolbench.data.datasets import open_dataset
from wsolbench.data.pipeline import make_loader
from wsolbench.data.synthetic import SynthParams, cached
from wsolbench.engine.fit import Acceleration


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _steps_per_second(model, batches, device, autocast, scaler, steps: int, warmup: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    iterator = iter(batches)
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        images, labels = next(iterator)
        with autocast():
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    _sync(device)
    return steps / (time.perf_counter() - start)


def _precision(device, amp: str):
    dtype, channels_last = Acceleration(amp=amp, channels_last=amp).resolve(device)
    autocast = (functools.partial(torch.autocast, device_type=device.type, dtype=dtype) if dtype
                else contextlib.nullcontext)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return autocast, scaler, channels_last, str(dtype).replace("torch.", "") if dtype else "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbones", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)

    params = SynthParams(image_size=args.image_size, classes=args.classes,
                         train_per_class=max(40, -(-args.batch_size * (args.steps + args.warmup) // args.classes)))
    train = open_dataset("synthetic", cached(params), "train", image_size=args.image_size)
    rows = []
    for name in args.backbones:
        results = {}
        for amp in ("off", "on"):
            autocast, scaler, channels_last, label = _precision(device, amp)
            model = create_backbone(name, args.classes, pretrained=False).to(device)
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            model = model.to(memory_format=memory_format)
            images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
            labels = torch.randint(0, args.classes, (args.batch_size,), device=device)
            fixed = iter(lambda: (images.contiguous(memory_format=memory_format), labels), None)
            results[f"model {label}"] = _steps_per_second(model, fixed, device, autocast, scaler, args.steps,
                                                          args.warmup) * args.batch_size
            if amp == "on":
                loader = make_loader(train, args.batch_size, device=device, shuffle=True, drop_last=True)

                def epochs():
                    while True:
                        for batch in loader:
                            yield batch["image"].contiguous(memory_format=memory_format), batch["label"]

                results[f"end to end {label}"] = _steps_per_second(
                    model, epochs(), device, autocast, scaler, args.steps, args.warmup) * args.batch_size
        names = list(results)
        rows.append([name, *(f"{results[n]:.0f}" for n in names),
                     f"{results[names[1]] / results[names[0]]:.2f}x", f"{results[names[2]] / results[names[1]]:.2f}"])
    print(f"training images/s, batch {args.batch_size}, {args.image_size} px, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(tabulate(rows, headers=["backbone", "model fp32", f"model {label}", f"end to end {label}",
                                  "AMP / fp32", "end-to-end / model"], tablefmt="github"))


if __name__ == "__main__":
    main()
