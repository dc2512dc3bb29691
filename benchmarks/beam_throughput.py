"""Images per second: batch-predict on Beam's DirectRunner vs a plain single-process predict loop.

Generates N JPEGs in a temp dir (random crops, flips and rescales of the shipped sample
photos, re-encoded), then runs the same model over the same files:

- ``plain``: one process, the model loaded once (``ModelRunner``), decode + preprocess with
  the data module, batches of 32, records built — ``runtime.predict.predict``, i.e. what
  ``tftrt predict`` does. Timed with and without the model load.
- ``beam``: ``jobs.batch_predict.batch_predict`` on the DirectRunner with
  ``--direct_num_workers=W --direct_running_mode=multi_processing``, once with Beam's adaptive
  batching (min 1, max 32) and once with fixed batches (min = max = 32). Timed end to end:
  pipeline start-up, worker start, one model load per worker, writing the shards.

Also checks that all runs give the same top-1 class for every image. Writes JSON to stdout
(and to --output if given): every run with the 1-minute load average before it, and the best
images/s of each kind (the machine is shared, so repeat with --repeats and read the best).

    python benchmarks/beam_throughput.py --images 2000 --workers 2 --repeats 2
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tftrt_toolkit.jobs.batch_predict import batch_predict, read_records  # noqa: E402
from tftrt_toolkit.runtime.predict import predict  # noqa: E402
from tftrt_toolkit.runtime.session import ModelRunner  # noqa: E402

DEFAULT_MODEL = os.path.join(ROOT, "saved_models", "efficientnet_lite0")
SAMPLES = os.path.join(ROOT, "saved_models", "samples")


def generate_images(directory: str, count: int, seed: int) -> None:
    """``count`` JPEGs: each a random 70-100% crop of a sample photo, maybe mirrored, rescaled to 160-400 px."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(path).convert("RGB") for path in sorted(glob.glob(os.path.join(SAMPLES, "*.jpg")))]
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = photo.size
        scale = rng.uniform(0.7, 1.0)
        crop_w, crop_h = int(width * scale), int(height * scale)
        left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
        image = photo.crop((left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        side = int(rng.integers(160, 401))
        image = image.resize((side, side), Image.Resampling.BILINEAR)
        image.save(os.path.join(directory, f"image_{index:05d}.jpg"), quality=90)


def run_plain(model: str, directory: str, batch_size: int) -> dict:
    start = time.perf_counter()
    with ModelRunner(model) as runner:
        loaded = time.perf_counter()
        result = predict(runner, directory, batch_size=batch_size)
    end = time.perf_counter()
    count = len(result.records)
    return {
        "images": count,
        "seconds": round(end - start, 2),
        "model_load_seconds": round(loaded - start, 2),
        "images_per_second": round(count / (end - start), 1),
        "images_per_second_after_load": round(count / (end - loaded), 1),
        "top1": {os.path.basename(r["image"]): r["predictions"][0]["class_id"] for r in result.records},
    }


def run_beam(model: str, directory: str, output: str, workers: int, min_batch_size: int, max_batch_size: int) -> dict:
    pipeline_args = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing",
                     "--default_sdk_harness_log_level=WARNING"]
    start = time.perf_counter()
    result = batch_predict(model, os.path.join(directory, "*.jpg"), output, min_batch_size=min_batch_size,
                           max_batch_size=max_batch_size, pipeline_args=pipeline_args, overwrite=True)
    seconds = time.perf_counter() - start
    records = list(read_records(result.prediction_files))
    return {
        "pipeline_args": pipeline_args,
        "min_batch_size": min_batch_size,
        "max_batch_size": max_batch_size,
        "images": len(records),
        "failed": result.images_failed,
        "shards": len(result.prediction_files),
        "batch_sizes": result.batch_sizes,
        "seconds": round(seconds, 2),
        "images_per_second": round(len(records) / seconds, 1),
        "top1": {os.path.basename(r["image"]): r["predictions"][0]["class_id"] for r in records},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of the three runs (best is reported)")
    parser.add_argument("--output", help="also write the JSON result here")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="tftrt-beam-bench-")
    try:
        images = os.path.join(work, "images")
        os.makedirs(images)
        start = time.perf_counter()
        generate_images(images, args.images, args.seed)
        generate_seconds = time.perf_counter() - start

        runs = {"plain": [], "beam_adaptive_batches": [], "beam_fixed_batches": []}
        # Interleaved repeats: on a shared machine, other people's load shifts between runs;
        # the load average before each run is recorded with it.
        for _ in range(args.repeats):
            for name, run in (
                ("plain", lambda: run_plain(args.model, images, args.batch_size)),
                ("beam_adaptive_batches", lambda: run_beam(args.model, images, os.path.join(work, "adaptive", "pred"),
                                                           args.workers, 1, args.batch_size)),
                ("beam_fixed_batches", lambda: run_beam(args.model, images, os.path.join(work, "fixed", "pred"),
                                                        args.workers, args.batch_size, args.batch_size)),
            ):
                load_before = os.getloadavg()[0]
                runs[name].append({**run(), "load_average_1min_before": round(load_before, 2)})
        reference = runs["plain"][0]["top1"]
        for results in runs.values():
            for result in results:
                result["top1_agrees_with_plain"] = sum(result["top1"].get(image) == class_id for image, class_id in reference.items())
                del result["top1"]
        best = {name: max(result["images_per_second"] for result in results) for name, results in runs.items()}
        report = {
            "benchmark": "beam_throughput",
            "model": os.path.relpath(args.model, ROOT) if args.model.startswith(ROOT) else args.model,
            "images": args.images,
            "generate_seconds": round(generate_seconds, 1),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "versions": _versions(),
            "best_images_per_second": best,
            "runs": runs,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


def _versions() -> dict:
    import apache_beam
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "apache_beam": apache_beam.__version__, "numpy": np.__version__}


if __name__ == "__main__":
    main()
