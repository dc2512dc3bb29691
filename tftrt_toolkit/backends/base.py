"""The small interface every backend implements, and what a conversion hands to the saver."""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Dict, Optional

from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.environment import Environment
from tftrt_toolkit.models.loader import LoadedModel

# A zero-argument callable returning an iterator of input tuples in signature order:
# the form TrtGraphConverterV2.convert(calibration_input_fn=...) and build(input_fn=...) call.
InputFn = Callable[[], object]


@dataclasses.dataclass
class Conversion:
    """A converted model not yet on disk: ``write(dir)`` saves it; ``summary`` and ``timings`` go to metadata."""

    backend: str
    precision: str
    write: Callable[[str], None]
    summary: Dict[str, object] = dataclasses.field(default_factory=dict)
    timings: Dict[str, float] = dataclasses.field(default_factory=dict)


class ConversionBackend(abc.ABC):
    """A way to turn a LoadedModel into an optimized SavedModel."""

    name: str = ""

    @abc.abstractmethod
    def check_available(self, config: ConversionConfig, env: Environment) -> None:
        """Raise BackendUnavailable/ConfigError when this backend cannot run ``config`` here, before any work."""

    @abc.abstractmethod
    def convert(self, model: LoadedModel, config: ConversionConfig, *,
                calibration_input_fn: Optional[InputFn] = None,
                build_input_fn: Optional[InputFn] = None) -> Conversion:
        """Convert ``model`` as ``config`` says; raise ConversionError when the backend fails."""
