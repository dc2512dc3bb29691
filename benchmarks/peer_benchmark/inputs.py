"""The inputs every row shares: augmented photos for the agreement check and int8 calibration, batches of them.

Every int8 row, ours and the peers', calibrates on the same arrays (``calibration_batches``).
"""

import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from tftrt_toolkit.errors import ConfigError

from . import ROOT


# cpu_int8 calibrates on ConversionConfig's default 8 batches of 8.
CALIBRATION_SAMPLES = 64
PHOTOS_PREFIX = "photos:"


def photo_inputs(spec: str, loaded, directory: str, count: int, seed: int) -> Optional[Tuple[str, str]]:
    """(data spec, description) for ``photos:DIR``: ``count`` augmented photos written to ``directory``.

    None when ``spec`` is another data spec, or the model does not take one NHWC RGB image
    (then callers use ``--data``). Random pixels make most classifiers answer one class for
    every input, so agreeing on them proves little, and they calibrate int8 ranges no real
    input has; crops of real photos spread over many classes.
    """
    if not spec.startswith(PHOTOS_PREFIX):
        return spec, spec
    inputs = loaded.signature.inputs
    if len(inputs) != 1 or inputs[0].shape is None or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 3:
        return None
    photos = spec[len(PHOTOS_PREFIX):]
    if not os.path.isdir(photos):
        photos = os.path.join(ROOT, photos)  # checked by parse_args: the default, run from another directory
    write_augmented_photos(photos, directory, count, seed)
    return directory, (f"{count} random crops/flips/brightness changes (seed {seed}) of the photos in "
                       f"{spec[len(PHOTOS_PREFIX):]}")


def write_augmented_photos(source_dir: str, output_dir: str, count: int, seed: int) -> None:
    """``count`` JPEGs: random 40-100% crops of ``source_dir``'s photos, maybe mirrored, brightness/contrast changed."""
    from PIL import Image

    names = sorted(n for n in os.listdir(source_dir) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        raise ConfigError(f"--agreement_data: no .jpg/.png photos in {source_dir!r}; pass photos:DIR with some, "
                          "or a --data spec")
    photos = [np.asarray(Image.open(os.path.join(source_dir, name)).convert("RGB")) for name in names]
    rng = np.random.default_rng(seed)
    os.makedirs(output_dir, exist_ok=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        scale = rng.uniform(0.4, 1.0)
        crop_h, crop_w = max(8, int(height * scale)), max(8, int(width * scale))
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
        pixels = photo[top:top + crop_h, left:left + crop_w].astype(np.float32)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        pixels = np.clip(pixels * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(output_dir, f"{index:04d}.jpg"), quality=92)


def batches_of(source, count: int, batch_size: int) -> List[Dict[str, np.ndarray]]:
    """``count`` samples (rounded up to whole batches) as batches of exactly ``batch_size``."""
    from tftrt_toolkit.data.samples import filled_batch

    batches = []
    for batch in source.batches(batch_size, limit=-(-count // batch_size) * batch_size):
        if len(batch) < batch_size:
            break
        batches.append(batch.inputs)
    return batches or [filled_batch(source, batch_size)]


def calibration_batches(data: str, loaded) -> List[Dict[str, np.ndarray]]:
    """The batches our int8 conversion calibrates on, as arrays: the same reader, preprocessing, steps and batch size.

    ``pipeline.convert`` draws its calibration through ``calibration_input_fn(open_source(...))``
    with ConversionConfig's defaults; the peers' int8 rows get exactly these arrays.
    """
    from tftrt_toolkit.config import ConversionConfig
    from tftrt_toolkit.data import calibration_input_fn, open_source

    config = ConversionConfig(backend="cpu", precision="int8")
    source = open_source(data, loaded.signature, model_hint=loaded.model_info)
    names = [spec.name for spec in loaded.signature.inputs]
    inputs = calibration_input_fn(source, batch_size=config.batch_size, steps=config.calibration_steps, progress=False)
    return [dict(zip(names, (np.asarray(array) for array in batch))) for batch in inputs()]
