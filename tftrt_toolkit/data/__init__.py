"""Input data for every stage: images, arrays and synthetic inputs shaped from a signature.

One module feeds INT8 calibration, TensorRT ``build()``, predict, validate and benchmark, so
they all see the same decoding, resizing and preprocessing. It needs only numpy and
Pillow (no TensorFlow): consumers turn the numpy arrays into tensors.

Typical use::

    source = open_source("images/", signature, preprocess="auto", model_hint="keras:ResNet50")
    for batch in source.batches(8):              # Batch: .inputs {name: array}, .sources (paths)
        outputs = model(**batch.inputs)
    converter.convert(calibration_input_fn=calibration_input_fn(source, batch_size=8, steps=10))
    converter.build(input_fn=build_input_fn(signature, "1x224x224x3,8x224x224x3"))

Contract:
- ``open_source(spec, signature, *, preprocess, input_shape, model_hint, seed, strict) -> Source``:
  spec is a directory of images, image path(s), FILE.npy, FILE.npz (keyed by input name),
  'synthetic' or 'synthetic:N'. Checks what it can at once; raises DataError otherwise.
- ``refuse_skipped_files(specs, signature, *, model_hint, input_shape)``: a job's --strict_data, every source at once.
- ``image_preprocess_mode(signature, preprocess, *, model_hint)``: the concrete mode images get
  (None for models that take no images); a converted model records it in its metadata.
- ``Source.skipped_files`` lists the files of image folders not used (``SkippedFile``: path,
  reason, detail), ``Source.skipped_summary()`` is the one line about them (also logged once
  per folder); ``strict=True`` refuses them when the source is opened.
- ``Source.batches(batch_size, *, limit, drop_remainder)`` streams ``Batch``es with inputs
  in signature order; ``Source.count()`` is the number of samples (None if unbounded);
  ``Source.preprocess`` is the concrete mode applied (record it in metadata).
- ``calibration_input_fn(source, batch_size, steps)`` and ``build_input_fn(signature,
  build_shapes)`` return zero-arg callables whose generators yield tuples of arrays in
  signature input order, as TF-TRT's ``convert()`` and ``build()`` expect.
- Every problem with the data is a ``tftrt_toolkit.errors.DataError`` with a one-line
  message saying what is wrong and what to do.
"""

from tftrt_toolkit.data.generators import BuildInputs, CalibrationInputs, build_input_fn, calibration_input_fn, parse_build_shapes
from tftrt_toolkit.data.images import IMAGE_EXTENSIONS, decode_image
from tftrt_toolkit.data.preprocess import PREPROCESS_MODES, preprocess_mode_for_keras_application, preprocess_pixels, resolve_preprocess_mode
from tftrt_toolkit.data.shapes import ImageLayout, parse_input_shape
from tftrt_toolkit.data.samples import Batch, Sample, Source
from tftrt_toolkit.data.skipped import SkippedFile, skipped_summary
from tftrt_toolkit.data.sources import image_preprocess_mode, open_source, refuse_skipped_files

__all__ = [
    "Batch",
    "BuildInputs",
    "CalibrationInputs",
    "IMAGE_EXTENSIONS",
    "ImageLayout",
    "PREPROCESS_MODES",
    "Sample",
    "SkippedFile",
    "Source",
    "build_input_fn",
    "calibration_input_fn",
    "decode_image",
    "open_source",
    "refuse_skipped_files",
    "parse_build_shapes",
    "parse_input_shape",
    "preprocess_mode_for_keras_application",
    "preprocess_pixels",
    "resolve_preprocess_mode",
    "skipped_summary",
]
