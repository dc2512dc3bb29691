"""Input functions in the form TF-TRT calls them: zero-arg callables yielding tuples of arrays.

``TrtGraphConverterV2.convert(calibration_input_fn=...)`` and ``.build(input_fn=...)``
both iterate ``fn()`` and turn each yielded tuple into positional arguments of the
converted function, so every tuple holds one array per input in signature order. Arrays
are numpy; TF-TRT converts them to tensors itself (``trt_convert._convert_to_tensor``).
"""

from __future__ import annotations

import logging
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from tftrt_toolkit.data.shapes import (
    Dims, InputShapeSpec, format_shape, image_layout, looks_like_image, override_for, parse_input_shape, parse_shape,
    parse_shape_list, resolve_sample_shape,
)
from tftrt_toolkit.data.samples import Source, check_batch_size, numeric_dtype
from tftrt_toolkit.data.synthetic import synthetic_array
from tftrt_toolkit.errors import ConfigError, DataError
from tftrt_toolkit.progress import progress_bar
from tftrt_toolkit.signature import ModelSignature, TensorInfo

logger = logging.getLogger(__name__)

BuildShape = Union[int, Dims]


class CalibrationInputs:
    """INT8 calibration batches: call it to get a fresh generator of tuples in signature order.

    Each call streams exactly ``steps`` full batches of ``batch_size`` from the start of the
    source (TF-TRT may call it again: ``build()`` runs calibration it deferred from
    ``convert()``), drawing a progress bar when asked (``progress``). After a run, ``samples_used`` and
    ``batches_used`` say what it fed. Raises DataError mid-run if undecodable images leave
    the source short.
    """

    def __init__(self, source: Source, batch_size: int, steps: int, *, progress: Optional[bool] = None):
        self.source = source
        self.batch_size = batch_size
        self.steps = steps
        self.progress = progress
        self.samples_used = 0
        self.batches_used = 0

    @property
    def samples_needed(self) -> int:
        return self.steps * self.batch_size

    # TF-TRT tests `if not calibration_input_fn`; never let this object count as false.
    def __bool__(self) -> bool:
        return True

    def __call__(self) -> Iterator[Tuple[np.ndarray, ...]]:
        self.samples_used = 0
        self.batches_used = 0
        readable = 0
        with progress_bar(description="calibration", total=self.steps, progress=bool(self.progress), unit="batch") as bar:
            for batch in self.source.batches(self.batch_size, limit=self.samples_needed):
                readable += len(batch)
                if len(batch) < self.batch_size:
                    break  # the source ran short; a partial batch would change the engine's shape
                yield batch.as_tuple()
                self.batches_used += 1
                self.samples_used += len(batch)
                bar.set_postfix_str(f"{self.samples_used} samples", refresh=False)
                bar.update(1)
        if self.batches_used < self.steps:
            advice = f"lower --calibration_steps to {self.batches_used}" if self.batches_used else f"lower --batch_size to at most {readable}"
            raise DataError(
                f"calibration needs {self.samples_needed} samples (calibration_steps {self.steps} x batch_size {self.batch_size}) "
                f"but only {readable} could be read from {self.source.description} (the others were undecodable); add data or {advice}"
            )
        logger.info(
            "calibration used %d samples (%d batches of %d) from %s", self.samples_used, self.batches_used, self.batch_size, self.source.description
        )


def calibration_input_fn(source: Source, batch_size: int, steps: int, *, progress: Optional[bool] = None) -> CalibrationInputs:
    """The ``calibration_input_fn`` for INT8: ``steps`` batches of ``batch_size`` from ``source``.

    Checks up front that the source has at least ``steps * batch_size`` samples (DataError
    saying how many there are and which ``--calibration_steps`` would fit) and that the
    model takes this batch size. ``progress``: a bar over the batches in a terminal or
    notebook (default off; ``convert`` passes its own choice). The result also serves ``build(input_fn=...)``.
    """
    for name, value in (("batch_size", batch_size), ("calibration_steps", steps)):
        if not _is_positive_int(value):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    check_batch_size(source.signature, batch_size)
    available = source.count()
    needed = steps * batch_size
    if available is not None and available < needed:
        fitting = available // batch_size
        advice = f"lower --calibration_steps to {fitting}" if fitting else f"lower --batch_size to at most {available}"
        raise DataError(
            f"calibration needs {needed} samples (calibration_steps {steps} x batch_size {batch_size}) but "
            f"{source.description} has {available}; add data or {advice}"
        )
    return CalibrationInputs(source, batch_size, steps, progress=progress)


class BuildInputs:
    """Inputs for ``converter.build(input_fn=...)``: one tuple per requested shape set.

    ``shapes[i]`` maps each input name to the full shape of run i. Values are seeded
    synthetic data (engines depend on shapes, not values); each call yields the same arrays.
    """

    def __init__(self, signature: ModelSignature, shapes: Tuple[Dict[str, Dims], ...], seed: int = 0):
        self.signature = signature
        self.shapes = shapes
        self.seed = seed

    def __bool__(self) -> bool:  # TF-TRT tests `if not input_fn`
        return True

    def __call__(self) -> Iterator[Tuple[np.ndarray, ...]]:
        rng = np.random.default_rng(self.seed)
        for run in self.shapes:
            yield tuple(
                synthetic_array(info, run[info.name], rng, layout=_layout_or_none(info, run[info.name])) for info in self.signature.inputs
            )


def parse_build_shapes(build_shapes: Union[str, Sequence[Union[int, str, Sequence[int]]]]) -> Tuple[BuildShape, ...]:
    """'1,8' -> (1, 8); '1x224x224x3,8x224x224x3' -> ((1, 224, 224, 3), (8, 224, 224, 3)).

    Items are batch sizes or full shapes (batch dim first); a sequence may mix ints, shape
    strings and int tuples (``ConversionConfig.build_shapes`` gives tuples). A one-dim
    shape is a batch size: for a rank-1 input the two mean the same. Raises DataError for
    an empty list or a malformed item.
    """
    items = list(parse_shape_list(build_shapes, what="build shape") if isinstance(build_shapes, str) else build_shapes)
    if not items:
        raise DataError("build_shapes is empty; give batch sizes (e.g. 1,8) or full shapes (e.g. 1x224x224x3,8x224x224x3)")
    parsed = []
    for item in items:
        dims = (int(item),) if _is_positive_int(item) else parse_shape(item, what="build shape")
        parsed.append(dims[0] if len(dims) == 1 else dims)
    return tuple(parsed)


def build_input_fn(
    signature: ModelSignature,
    build_shapes: Union[str, Sequence[Union[int, str, Sequence[int]]]],
    *,
    input_shape: InputShapeSpec = None,
    seed: int = 0,
) -> BuildInputs:
    """The ``input_fn`` for ``converter.build()``: one input tuple per build shape.

    A batch size B gives every input its signature shape with batch B (unknown dims from
    ``input_shape``); a full shape is used as is for every input, so it must fit each one
    (e.g. 8x128 for BERT's ids, mask and type ids). Raises DataError when a shape does not
    fit an input, contradicts a fixed batch, or leaves dims unknown.
    """
    overrides = parse_input_shape(input_shape)
    runs = []
    for item in parse_build_shapes(build_shapes):
        run = {}
        for info in signature.inputs:
            numeric_dtype(info)
            if isinstance(item, tuple):
                run[info.name] = _fit_full_shape(info, item)
            else:
                fixed = info.shape[0] if info.shape else None
                if fixed is not None and fixed != item:
                    raise DataError(f"build batch size {item} does not fit input {info.name!r}, which takes batches of exactly {fixed}")
                run[info.name] = (item,) + resolve_sample_shape(info, override_for(overrides, info.name))
        runs.append(run)
    return BuildInputs(signature, tuple(runs), seed=seed)


def _fit_full_shape(info: TensorInfo, dims: Dims) -> Dims:
    if info.shape is None:
        return dims
    fits = len(dims) == len(info.shape) and all(want is None or want == got for want, got in zip(info.shape, dims))
    if not fits:
        raise DataError(
            f"build shape {format_shape(dims)} does not fit input {info.name!r} of shape {format_shape(info.shape)}; "
            "give batch sizes (e.g. 1,8) with --input_shape instead"
        )
    return dims


def _layout_or_none(info: TensorInfo, full_shape: Dims):
    if not looks_like_image(info):
        return None
    return image_layout(info, full_shape)


def _is_positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0
