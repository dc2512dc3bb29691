"""What every source yields: ``Sample``s grouped into ``Batch``es, and the ``Source`` interface.

Sources stream one sample at a time and batches are stacked as they fill, so nothing
holds all the data at once: memory stays flat for folders of any size.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import logging
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tftrt_toolkit.data.preprocess import ModelHint, resolve_preprocess_mode
from tftrt_toolkit.data.shapes import Dims
from tftrt_toolkit.data.skipped import SkippedFile
from tftrt_toolkit.errors import ConfigError, DataError
from tftrt_toolkit.signature import ModelSignature, TensorInfo

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
    """One example: an array per input name (no batch dim) and where it came from."""

    inputs: Mapping[str, np.ndarray]
    source: str


@dataclasses.dataclass(frozen=True, eq=False)
class Batch:
    """A batch: ``inputs`` maps each input name, in signature order, to an array with a
    leading batch dim; ``sources[i]`` says where row i came from (an image path,
    'file.npy[12]', 'synthetic[3]') so predictions can be labelled per row."""

    inputs: Dict[str, np.ndarray]
    sources: Tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sources)

    def as_tuple(self) -> Tuple[np.ndarray, ...]:
        """The arrays in signature input order: the form TF-TRT's input functions yield."""
        return tuple(self.inputs.values())


class Source(abc.ABC):
    """Inputs for one model signature, streamed from one data spec.

    Attributes: ``signature``; ``description`` (the data, for messages); ``preprocess``
    (the concrete mode applied to image pixels, to record in metadata: for arrays 'none'
    means "fed as stored"); ``sample_shapes`` (input name -> shape without batch dim); ``notes``.
    """

    def __init__(self, signature: ModelSignature, description: str, preprocess: str, sample_shapes: Dict[str, Dims]):
        self.signature = signature
        self.description = description
        self.preprocess = preprocess
        self.sample_shapes = sample_shapes
        # Where only part of a file was used (the first frame of an animated GIF): {sample source: note}.
        self.notes: Dict[str, str] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description}, preprocess={self.preprocess!r})"

    @abc.abstractmethod
    def count(self) -> Optional[int]:
        """How many samples there are (without decoding), or None when unbounded.

        For images this counts files; undecodable ones are skipped later, so fewer may come.
        """

    @abc.abstractmethod
    def samples(self) -> Iterator[Sample]:
        """Stream the samples, the same ones in the same order on every call."""

    @property
    def skipped_files(self) -> Tuple[SkippedFile, ...]:
        """Files of the data not used so far (image folders: non-images, unreadable, hidden), in the order found."""
        return ()

    def skipped_summary(self) -> str:
        """One line about ``skipped_files`` ("skipped 2 files: ..."), "" when nothing was skipped."""
        return ""

    def batches(self, batch_size: int, *, limit: Optional[int] = None, drop_remainder: bool = False) -> Iterator[Batch]:
        """Stream batches of ``batch_size`` samples (the last one smaller unless ``drop_remainder``).

        ``limit`` caps the number of samples read (required in practice for an unbounded
        synthetic source). Inputs with a fixed batch dim force ``batch_size`` to equal it
        and drop a short last batch (with a warning), since such a model cannot take it.
        Raises ConfigError for a batch size below 1, DataError for a fixed-batch mismatch.
        """
        fixed = check_batch_size(self.signature, batch_size)
        drop_remainder = drop_remainder or fixed
        names = self.signature.input_names
        samples = self.samples() if limit is None else itertools.islice(self.samples(), limit)
        pending: List[Sample] = []
        for sample in samples:
            pending.append(sample)
            if len(pending) == batch_size:
                yield _stack(names, pending)
                pending = []
        if pending and not drop_remainder:
            yield _stack(names, pending)
        elif pending and fixed:
            logger.warning("dropped the last %d sample(s): the model takes batches of exactly %d", len(pending), batch_size)


def filled_batch(source: "Source", batch_size: int) -> Dict[str, np.ndarray]:
    """Inputs of exactly ``batch_size`` samples from the start of ``source``; a smaller data set is repeated to fill it.

    For requests that must have a given batch size (benchmark runs, TF Serving warmup records)
    whatever the data holds. Raises DataError when the source gives no samples at all.
    """
    batch = next(iter(source.batches(batch_size, limit=batch_size)), None)
    if batch is None:
        raise DataError(f"{source.description} gave no samples")
    if len(batch) == batch_size:
        return batch.inputs
    repeats = -(-batch_size // len(batch))
    return {name: np.concatenate([array] * repeats)[:batch_size] for name, array in batch.inputs.items()}


def check_batch_size(signature: ModelSignature, batch_size: int) -> bool:
    """Check ``batch_size`` suits the signature; return whether some input fixes the batch dim.

    Raises ConfigError for a batch size below 1, DataError when an input takes batches of
    exactly another size.
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    fixed = {info.name: info.shape[0] for info in signature.inputs if info.shape and info.shape[0] is not None}
    for name, size in fixed.items():
        if size != batch_size:
            raise DataError(f"input {name!r} takes batches of exactly {size}; use --batch_size={size}")
    return bool(fixed)


def _stack(names: Sequence[str], samples: Sequence[Sample]) -> Batch:
    return Batch(
        inputs={name: np.stack([sample.inputs[name] for sample in samples]) for name in names},
        sources=tuple(sample.source for sample in samples),
    )


def numeric_dtype(info: TensorInfo) -> np.dtype:
    """The numpy dtype of a numeric input; DataError for string inputs, which nothing here can feed."""
    if info.dtype in ("string", "object", "str", "bytes"):
        raise DataError(
            f"input {info.name!r} takes strings; this toolkit feeds numeric tensors only: export a signature that takes the "
            "preprocessed numbers (e.g. token ids) instead"
        )
    try:
        return np.dtype(info.dtype)
    except TypeError as error:
        raise DataError(f"input {info.name!r} has dtype {info.dtype!r}, which numpy cannot hold; feed a model with numeric inputs") from error


def pixel_mode(info: TensorInfo, preprocess: str, model_hint: ModelHint, *, channels: int) -> str:
    """The concrete preprocess mode for pixels going into ``info``; integer inputs take raw pixels.

    Raises DataError when an explicit mode cannot apply (integer input, 1-channel caffe/torch).
    """
    dtype = numeric_dtype(info)
    if dtype.kind in "iu":
        if preprocess not in ("auto", "none"):
            raise DataError(f"input {info.name!r} takes {info.dtype} pixels, so preprocess {preprocess!r} cannot apply; use --preprocess=none or auto")
        return "none"
    if dtype.kind != "f":
        raise DataError(f"input {info.name!r} has dtype {info.dtype}; images feed float or integer inputs only")
    mode, why = resolve_preprocess_mode(preprocess, model_hint=model_hint)
    if preprocess == "auto":
        logger.info("preprocess auto -> %s (%s)", mode, why)
    if channels != 3 and mode in ("caffe", "torch"):
        raise DataError(f"preprocess {mode!r} needs RGB, but input {info.name!r} takes {channels} channel(s); use --preprocess=tf or none")
    return mode
