"""Peak memory while streaming a large image folder through tftrt_toolkit.data.

Generates N JPEG images of mixed sizes in a temp dir (in a child process, so its memory
does not count), streams them through ``open_source(dir).batches(B)`` with caffe
preprocessing at 224x224, and reports the peak RSS (``resource.getrusage``) before
streaming, after the first 10 batches and after all of them. Flat memory means the last
two are about equal and far below what holding every preprocessed image would take.
Writes JSON to stdout (and to --output if given).

    python benchmarks/data_streaming_memory.py --images 2000 --batch_size 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from tftrt_toolkit.data import open_source  # noqa: E402
from tftrt_toolkit.signature import ModelSignature, TensorInfo  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def generate_images(directory: str, count: int, seed: int) -> None:
    """JPEGs of mixed sizes (200..640 px a side) in 10 subfolders: gradients plus noise."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        height, width = (int(v) for v in rng.integers(200, 641, size=2))
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
        noise = rng.integers(0, 40, size=(height, width, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        folder = os.path.join(directory, f"class_{index % 10}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(folder, f"image_{index:05d}.jpg"), quality=85)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the JSON result here")
    args = parser.parse_args()

    signature = ModelSignature(
        key="serving_default",
        inputs=(TensorInfo("images", (None, args.size, args.size, 3), "float32"),),
        outputs=(TensorInfo("probabilities", (None, 1000), "float32"),),
    )
    with tempfile.TemporaryDirectory(prefix="tftrt-data-bench-") as directory:
        # Generate in a child process so its temporaries do not count in this process's peak.
        start = time.perf_counter()
        child = multiprocessing.get_context("fork").Process(target=generate_images, args=(directory, args.images, args.seed))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"generating images failed (exit code {child.exitcode})")
        generate_s = time.perf_counter() - start

        source = open_source(directory, signature, preprocess="caffe")
        peak_before = peak_rss_mib()
        current_before = current_rss_mib()
        rows = batches = 0
        peak_after_first_batches = None
        start = time.perf_counter()
        for batch in source.batches(args.batch_size):
            rows += len(batch)
            batches += 1
            if batches == 10:
                peak_after_first_batches = peak_rss_mib()
        stream_s = time.perf_counter() - start
        peak_after = peak_rss_mib()

    all_in_memory_mib = args.images * args.size * args.size * 3 * 4 / 2**20
    result = {
        "benchmark": "data_streaming_memory",
        "images": args.images,
        "decoded": rows,
        "batches": batches,
        "batch_size": args.batch_size,
        "input_size": f"{args.size}x{args.size}x3 float32 (caffe)",
        "peak_rss_mib_before_streaming": round(peak_before, 1),
        "current_rss_mib_before_streaming": round(current_before, 1),
        "peak_rss_mib_after_10_batches": None if peak_after_first_batches is None else round(peak_after_first_batches, 1),
        "peak_rss_mib_after_streaming": round(peak_after, 1),
        "peak_rss_growth_mib": round(peak_after - peak_before, 1),
        "all_preprocessed_images_would_take_mib": round(all_in_memory_mib, 1),
        "generate_s": round(generate_s, 2),
        "stream_s": round(stream_s, 2),
        "images_per_s": round(rows / stream_s, 1) if stream_s else None,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pillow": Image.__version__,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
