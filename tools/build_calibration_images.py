"""Write the shipped int8 calibration images (tftrt_toolkit/shipped/calibration) from scikit-image's free photos.

``tftrt run`` on the shipped model calibrates int8 on these: it cannot ship ImageNet photos
(research use only), so it ships random crops of the photos scikit-image bundles under CC0 or
in the public domain. Measured on EfficientNet-Lite0 against calibrating on 248 real ImageNet
photos (benchmarks/int8_cpu_notes.md, "What the default job calibrates on"): the same top-1
agreement with fp32 on 750 held-out ImageNet photos, and top-1 within the noise.

    python tools/build_calibration_images.py            # (re)write tftrt_toolkit/shipped/calibration
    python tools/build_calibration_images.py --check    # write to a temp dir and compare pixels with the shipped copy

Deterministic: the same scikit-image version and seed give the same crops. Offline.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
CALIBRATION_DIR = REPO_ROOT / "tftrt_toolkit" / "shipped" / "calibration"
IMAGE_SIZE = 224
CROPS = 64  # the toolkit's default int8 calibration: 8 batches of 8
SEED = 1
JPEG_QUALITY = 90

# scikit-image's bundled photos (no download) and their licences, as skimage/data/_fetchers.py records them.
PHOTOS = (
    ("astronaut", "Eileen Collins, NASA astronaut (NASA Great Images)", "no known copyright restrictions, public domain"),
    ("brick", "a brick wall (CC0Textures)", "CC0"),
    ("camera", "a photographer behind a camera on a tripod, photo by Lav Varshney", "CC0"),
    ("cell", "a cell under a microscope", "CC0"),
    ("chelsea", "Chelsea the cat, photo by Stefan van der Walt", "CC0"),
    ("coffee", "a cup of espresso, photo by Rachel Michetti", "CC0"),
    ("coins", "Greek coins (Brooklyn Museum Collection)", "no known copyright restrictions"),
    ("grass", "grass (DeviantArt, linolafett)", "CC0"),
    ("gravel", "gravel (CC0Textures)", "CC0"),
    ("horse", "a horse silhouette by Andreas Preuss (marauder), openclipart", "CC0"),
    ("hubble_deep_field", "the Hubble deep field (NASA, HubbleSite)", "public domain (NASA)"),
    ("immunohistochemistry", "immunohistochemical staining (CMMI)", "no known copyright restrictions"),
    ("microaneurysms", "a retina detail by Andreas Maier (HRF database)", "CC0"),
    ("retina", "a fundus photograph by Mikael Häggström (Wikimedia)", "CC0"),
    ("rocket", "Falcon 9 carrying DSCOVR, photo by SpaceX", "public domain"),
    ("text", "a photo of printed text (Wikipedia, Corner.png)", "no known copyright restrictions, public domain"),
    ("clock", "a motion-blurred wall clock, photo by Stefan van der Walt", "public domain"),
)


def photos():
    """(name, description, licence, RGB uint8 array) for each photo."""
    import skimage.data

    for name, description, licence in PHOTOS:
        pixels = np.asarray(getattr(skimage.data, name)())
        if pixels.dtype == bool:
            pixels = pixels.astype(np.uint8) * 255
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        yield name, description, licence, pixels[..., :3].astype(np.uint8)


def crops(count: int = CROPS, seed: int = SEED):
    """(file name, source name, 224x224 RGB uint8): random 40-100% crops, flips, brightness/contrast changes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = [(name, Image.fromarray(pixels)) for name, _, _, pixels in photos()]
    for index in range(count):
        name, image = sources[index % len(sources)]
        width, height = image.size
        area = rng.uniform(0.4, 1.0) * width * height
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        crop_width = int(min(width, np.sqrt(area * ratio)))
        crop_height = int(min(height, np.sqrt(area / ratio)))
        left = rng.integers(0, width - crop_width + 1)
        top = rng.integers(0, height - crop_height + 1)
        crop = image.crop((left, top, left + crop_width, top + crop_height))
        pixels = np.asarray(crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)).astype(np.float32)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        mean = pixels.mean()
        pixels = np.clip((pixels - mean) * rng.uniform(0.75, 1.25) + mean * rng.uniform(0.75, 1.25), 0, 255)
        yield f"{index:03d}_{name}.jpg", name, pixels.astype(np.uint8)


def write(target: Path) -> None:
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    for file_name, _, pixels in crops():
        Image.fromarray(pixels).save(target / file_name, "JPEG", quality=JPEG_QUALITY)
    (target / "SOURCES.md").write_text(sources_markdown(), encoding="utf-8")


def sources_markdown() -> str:
    import skimage

    lines = [
        "# int8 calibration images",
        "",
        f"{CROPS} random crops (40-100% of the frame, aspect 3:4-4:3, half flipped, brightness and contrast",
        f"±25%) of the photos scikit-image {skimage.__version__} bundles (`skimage.data`), resized to "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} and saved as JPEG quality {JPEG_QUALITY}; written by",
        "`python tools/build_calibration_images.py` (seed fixed, so reproducible). `tftrt run` on the",
        "shipped model calibrates int8 on them; `--calibration_data=DIR` gives your own.",
        "",
        "Why not ImageNet photos: ImageNet's terms allow research use only. On EfficientNet-Lite0 these",
        "crops calibrate about as well as 248 real ImageNet photos (benchmarks/int8_cpu_notes.md).",
        "",
        "| source (`skimage.data`) | what | licence (as scikit-image records it) |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}()` | {description} | {licence} |" for name, description, licence in PHOTOS]
    lines += ["", "CC0 1.0: https://creativecommons.org/publicdomain/zero/1.0/", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped copy instead of replacing it")
    args = parser.parse_args(argv)
    if not args.check:
        if CALIBRATION_DIR.exists():
            shutil.rmtree(CALIBRATION_DIR)
        write(CALIBRATION_DIR)
        print(f"wrote {CROPS} images to {CALIBRATION_DIR}")
        return 0
    from PIL import Image

    with tempfile.TemporaryDirectory() as scratch:
        write(Path(scratch))
        different = []
        for path in sorted(Path(scratch).glob("*.jpg")):
            shipped = CALIBRATION_DIR / path.name
            if not shipped.exists() or not np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(shipped))):
                different.append(path.name)
    print("same as the shipped copy" if not different else f"{len(different)} images differ, first {different[0]}")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
