"""Speed and agreement of the cpu backend's fp32, bf16 and int8 outputs against plain TensorFlow.

    python benchmarks/cpu_int8_speed.py                                   # keras:ResNet50, weights none
    python benchmarks/cpu_int8_speed.py --model=saved_models/efficientnet_lite0 --output=out.json
    python benchmarks/cpu_int8_speed.py --randomize_batchnorm             # ResNet50 with non-trivial BN/bias

One process: the original SavedModel is loaded with plain ``tf.saved_model.load`` and each
converted model the same way; every timed round runs all variants once each, in turn, so
load from other processes on the machine hits all of them alike. Medians over rounds,
outputs fetched to host (``.numpy()``), warm-up excluded. Agreement: top-1 of each variant
vs plain TF on real photos (``--eval_images`` dir and, when installed, scikit-image's
sample photos), augmented by random crops/flips/brightness to a few hundred images.

Random-weight models are fine for speed; their top-1 is fragile (near-uniform logits), so
use a trained model (the shipped EfficientNet-Lite0) for accuracy.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_keras_application(name: str, path: str, randomize_batchnorm: bool, seed: int = 0) -> None:
    """keras.applications.NAME with random weights, exported as a SavedModel.

    ``randomize_batchnorm`` gives BatchNorm and conv biases trained-like values: fresh ones are
    identities/zeros that grappler folds away, a graph no trained model has.
    """
    import keras

    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(weights=None)
    if randomize_batchnorm:
        rng = np.random.default_rng(seed)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                gamma, beta, mean, var = layer.get_weights()
                layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                                   rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
            elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.use_bias:
                kernel, bias = layer.get_weights()
                layer.set_weights([kernel, rng.normal(0, 0.05, bias.shape)])
    model.export(path)


def photo_sources(image_dir: str):
    """Real photos as uint8 HxWx3 arrays: ``image_dir``'s JPEG/PNGs plus scikit-image's samples."""
    from PIL import Image

    photos = []
    for path in sorted(glob.glob(os.path.join(image_dir, "*.jpg")) + glob.glob(os.path.join(image_dir, "*.png"))):
        photos.append(np.asarray(Image.open(path).convert("RGB")))
    try:
        import skimage.data
    except ImportError:
        return photos
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field", "immunohistochemistry",
                 "coins", "moon", "page", "horse", "retina", "colorwheel", "logo", "motorcycle_left",
                 "motorcycle_right", "cat", "text", "clock", "grass", "gravel", "brick", "cell", "lily", "skin", "eagle"):
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a sample needing a download (no network) is just skipped
            continue
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            continue
        image = image[..., :3]
        if image.dtype != np.uint8:
            image = (255 * (image - image.min()) / (np.ptp(image) + 1e-9)).astype(np.uint8)
        photos.append(image)
    return photos


def augmented_photos(photos, count: int, size: int, seed: int) -> np.ndarray:
    """``count`` random crops (40-100% of the side), flips and brightness/contrast changes, resized to size²."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    result = np.empty((count, size, size, 3), np.float32)
    for i in range(count):
        image = photos[rng.integers(len(photos))]
        height, width = image.shape[:2]
        scale = rng.uniform(0.4, 1.0)
        crop_h = min(height, max(8, int(height * scale)))
        crop_w = min(width, max(8, int(width * scale * rng.uniform(0.8, 1.25))))
        top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
        crop = Image.fromarray(image[top:top + crop_h, left:left + crop_w]).resize((size, size), Image.BILINEAR)
        pixels = np.asarray(crop, np.float32)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        result[i] = np.clip(pixels * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25), 0, 255)
    return result


def interleaved_latency(functions, batch, rounds: int, warmup: int = 3):
    """Median/p90 ms per function; each round calls every function once, in turn (the toolkit's timing loop)."""
    import tensorflow as tf

    from tftrt_toolkit.runtime.benchmark import latency_stats
    from tftrt_toolkit.runtime.timing import time_rounds

    inputs = tf.constant(batch)  # made before the clock; each function fetches its outputs to host
    calls = {name: (lambda function: lambda: function(inputs))(function) for name, function in functions.items()}
    if warmup:
        time_rounds(calls, rounds=warmup)
    times = time_rounds(calls, rounds=rounds)
    stats = {name: latency_stats(seconds) for name, seconds in times.items()}
    return {name: {"median_ms": round(s["p50"], 3), "p90_ms": round(s["p90"], 3)} for name, s in stats.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="keras:ResNet50", help="SavedModel dir or keras:NAME (random weights)")
    parser.add_argument("--randomize_batchnorm", action="store_true", help="keras:NAME only: trained-like BN/bias")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds at batch 1 (scaled down for larger)")
    parser.add_argument("--calibration_samples", type=int, default=128)
    parser.add_argument("--eval_samples", type=int, default=300)
    parser.add_argument("--eval_images", default=os.path.join("saved_models", "samples"))
    parser.add_argument("--work_dir", default=None, help="where converted models go (default: a temp dir)")
    parser.add_argument("--output", default="benchmarks/results/cpu_int8_speed.json")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from tftrt_toolkit import pipeline
    from tftrt_toolkit.config import ConversionConfig
    from tftrt_toolkit.environment import probe

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="cpu_int8_speed_")
    if args.model.startswith("keras:"):
        source = os.path.join(work_dir, "original")
        if not os.path.exists(source):
            export_keras_application(args.model.split(":", 1)[1], source, args.randomize_batchnorm)
    else:
        source = args.model
    env = probe()
    plain_model = tf.saved_model.load(source)  # keep the object: its signature functions need it alive
    plain = plain_model.signatures["serving_default"]
    input_spec = plain.structured_input_signature[1]
    input_name, spec = next(iter(input_spec.items()))
    size = int(spec.shape[1])

    photos = photo_sources(args.eval_images)
    calibration = augmented_photos(photos, args.calibration_samples, size, seed=123)
    evaluation = augmented_photos(photos, args.eval_samples, size, seed=7)

    def calibration_input_fn():
        for start in range(0, len(calibration), 8):
            yield (calibration[start:start + 8],)

    variants = {"plain_tf": lambda x: [t.numpy() for t in plain(**{input_name: x}).values()]}
    conversions = {}
    keep_alive = [plain_model]
    for precision in [p for p in args.precisions.split(",") if p]:
        output = os.path.join(work_dir, precision)
        start = time.perf_counter()
        result = pipeline.convert(source, output, ConversionConfig(backend="cpu", precision=precision),
                                  overwrite=True, calibration_input_fn=calibration_input_fn)
        conversions[precision] = {"convert_s": round(time.perf_counter() - start, 1),
                                  "summary": result.metadata["conversion_summary"].get("int8"),
                                  "op_histogram": result.metadata["conversion_summary"].get("op_histogram")}
        loaded = tf.saved_model.load(output)
        keep_alive.append(loaded)
        function = loaded.signatures["serving_default"]
        variants[f"cpu_{precision}"] = (lambda f: lambda x: [t.numpy() for t in f(**{input_name: x}).values()])(function)

    agreement = {}
    outputs = {}
    for name, function in variants.items():
        outputs[name] = np.concatenate([function(tf.constant(evaluation[i:i + 25]))[0]
                                        for i in range(0, len(evaluation), 25)])
    reference = outputs["plain_tf"]
    # Photos far from ImageNet (text, micrographs) get near-uniform outputs whose top-1 flips
    # under any rounding (bf16 too); agreement where plain TF is confident separates that
    # from real damage. Needs probabilities (a softmax output); logits give no "confident" set.
    is_probability = bool(np.all(reference >= 0) and np.allclose(reference.sum(1), 1, atol=1e-3))
    confident = reference.max(1) >= 0.5 if is_probability else np.zeros(len(reference), bool)
    for name, values in outputs.items():
        agreement[name] = {
            "top1_agreement_vs_plain": round(float(np.mean(values.argmax(1) == reference.argmax(1))), 4),
            "confident_samples": int(confident.sum()),
            "top1_agreement_where_plain_top1_prob_ge_0.5": round(float(np.mean(
                values[confident].argmax(1) == reference[confident].argmax(1))), 4) if confident.any() else None,
            "top5_contains_plain_top1": round(float(np.mean(
                [reference[i].argmax() in np.argsort(-values[i])[:5] for i in range(len(values))])), 4),
            "max_abs_diff": float(np.max(np.abs(values - reference))),
        }

    latency = {}
    for batch_size in [int(b) for b in args.batch_sizes.split(",") if b]:
        rounds = max(10, args.rounds // max(1, batch_size // 2))
        measured = interleaved_latency(variants, evaluation[:batch_size], rounds)
        plain_ms = measured["plain_tf"]["median_ms"]
        fp32_ms = measured.get("cpu_fp32", {}).get("median_ms")
        for name, values in measured.items():
            values["speedup_vs_plain_tf"] = round(plain_ms / values["median_ms"], 3)
            if fp32_ms:
                values["speedup_vs_cpu_fp32"] = round(fp32_ms / values["median_ms"], 3)
        latency[f"bs{batch_size}"] = {"rounds": rounds, "variants": measured}

    report = {
        "model": args.model, "randomize_batchnorm": args.randomize_batchnorm, "source_saved_model": source,
        "tensorflow": env.tensorflow_version, "cpu": env.cpu_model, "cpu_features": list(env.cpu_features),
        "cpu_count": env.cpu_count, "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "eval_images": {"photos": len(photos), "augmented_samples": len(evaluation)},
        "calibration_samples": len(calibration),
        "latency": latency, "agreement": agreement, "conversions": conversions,
        "note": "provisional: shared machine; compare ratios measured in the same run, not absolute ms",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(report, handle, indent=1)
    for key, block in latency.items():
        print(key, {name: f"{v['median_ms']:.1f}ms {v['speedup_vs_plain_tf']:.2f}x" for name, v in block["variants"].items()})
    print("agreement", {name: (a["top1_agreement_vs_plain"], a["top1_agreement_where_plain_top1_prob_ge_0.5"])
                        for name, a in agreement.items()})
    print("wrote", args.output)
    return report


if __name__ == "__main__":
    main()
