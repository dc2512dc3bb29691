"""The conversion pipeline: load → choose backend → convert → save atomically with metadata.

    from tftrt_toolkit import convert, ConversionConfig
    result = convert("saved_models/efficientnet_lite0", "out/bf16", ConversionConfig(precision="bf16"))
    result.path, result.backend, result.precision, result.metadata   # a ConversionRecord
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Optional, Union

from tftrt_toolkit import artifacts
from tftrt_toolkit.version import __version__
from tftrt_toolkit.backends.base import InputFn
from tftrt_toolkit.backends.select import choose_backend
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.steps import StepLog
from tftrt_toolkit.environment import Environment, probe
from tftrt_toolkit.models.loader import LoadedModel, load_model
from tftrt_toolkit.models.spec import ModelKind, ModelSpec, parse_model_spec
from tftrt_toolkit.progress import Progress, ProgressOption, reports_progress
from tftrt_toolkit.serving.warmup import check_warmup_possible, write_conversion_warmup

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ConversionRecord:
    """What ``convert`` returns: where the converted model was saved and its metadata (plain data).

    ``runtime.OptimizedModel`` is the same model with ``validate``/``benchmark``/``predict``
    (``tt.convert`` returns that); it lives above this layer because it runs the model.
    """

    path: str
    metadata: dict

    @property
    def backend(self) -> str:
        return self.metadata["backend"]

    @property
    def precision(self) -> str:
        return self.metadata["precision"]

    def __fspath__(self) -> str:
        # Path-like: os.fspath(model), open(...), and every API that takes a model path take it.
        return self.path

    def to_json(self) -> dict:
        return {"path": self.path, "metadata": self.metadata}


@reports_progress("convert")
def convert(model: Union[str, ModelSpec, LoadedModel], output: str,
            config: Optional[ConversionConfig] = None, *,
            overwrite: bool = False,
            version: Optional[Union[int, str]] = None,
            weights: Optional[str] = "imagenet",
            calibration_data: Optional[Union[str, list]] = None,
            calibration_input_fn: Optional[InputFn] = None,
            build_input_fn: Optional[InputFn] = None,
            preprocess: str = "auto",
            input_shape: Optional[tuple] = None,
            unsafe_deserialization: bool = False,
            custom_objects=None,
            strict_data: bool = False,
            env: Optional[Environment] = None,
            backend=None,
            progress: ProgressOption = True) -> ConversionRecord:
    """Convert ``model`` for inference and save it at ``output`` (or ``output/version``).

    ``preprocess``/``input_shape``: how images (calibration data) become inputs; the concrete
    preprocessing is recorded in the metadata ("preprocess"), and later commands on the model
    default to it. ``config`` holds every conversion option (default: auto backend, fp32). INT8 needs
    ``calibration_data`` (a data spec: image dir, .npy/.npz, "synthetic") or a ready
    ``calibration_input_fn``. ``backend`` overrides the backend object (tests inject doubles).
    ``custom_objects`` gives a Keras file's custom classes (a dict, module, module path or .py
    file; see ``load_model``). ``strict_data`` refuses calibration folders with files that
    would be skipped.
    ``progress``: a bar over the steps in a terminal or notebook (False: none); each step is
    logged at INFO either way, and a callable receives each step message (``StepEvent``s).

    Returns a ConversionRecord (``tt.convert`` wraps it in an OptimizedModel). Raises ToolkitError subclasses; on any failure (Ctrl-C
    included) nothing is left at ``output`` and the input is untouched.
    """
    config = config or ConversionConfig()
    env = env or probe()
    timings = {}

    # Everything that can be refused cheaply is refused before loading the model.
    if isinstance(model, LoadedModel):
        spec = model.spec
    elif isinstance(model, ModelSpec):
        spec = model
    else:
        spec = parse_model_spec(model, weights=weights)
    target = artifacts.resolve_output(output, version)
    input_paths = [spec.location] if spec.kind in (ModelKind.SAVED_MODEL, ModelKind.KERAS_FILE, ModelKind.HUB) else []
    artifacts.check_output(target, input_paths, overwrite)
    check_warmup_possible(config)
    if backend is None:
        config, backend, why = choose_backend(config, env)
    else:
        config, why = config.replace(backend=backend.name), "backend object given by the caller"
        backend.check_available(config, env)
    progress(f"backend {config.backend.value} ({why}), precision {config.precision.value}")

    owns_model = not isinstance(model, LoadedModel)
    # Each step (load, freeze, every graph stage, save) is reported as it starts and ends.
    steps = StepLog(progress)
    with steps.active():
        start = time.perf_counter()
        with steps.step("load"):
            loaded = model if not owns_model else load_model(
                spec, signature_key=config.signature_key, unsafe_deserialization=unsafe_deserialization,
                custom_objects=custom_objects)
        timings["load_s"] = time.perf_counter() - start
        try:
            from tftrt_toolkit.data import image_preprocess_mode

            # Refused here, before converting, when it cannot apply to the model's input.
            image_mode = image_preprocess_mode(loaded.signature, preprocess, model_hint=loaded.model_info)
            data_record = {}
            if config.precision.value == "int8" and calibration_input_fn is None and calibration_data is not None:
                calibration_input_fn, source = _calibration_fn(loaded, config, calibration_data, preprocess, input_shape,
                                                               strict_data, progress)
                # Later commands (predict, validate) reuse the preprocessing the model was calibrated with.
                data_record = {"calibration_data": str(calibration_data), "preprocess": source.preprocess}
            if build_input_fn is None and config.build_shapes:
                from tftrt_toolkit.data import build_input_fn as make_build_input_fn

                build_input_fn = make_build_input_fn(loaded.signature, config.build_shapes, input_shape=input_shape)

            with artifacts.staged_output(target, overwrite=overwrite) as stage:
                progress(f"converting {spec.text} → {target}")
                start = time.perf_counter()
                conversion = backend.convert(loaded, config, calibration_input_fn=calibration_input_fn,
                                             build_input_fn=build_input_fn)
                timings["convert_s"] = time.perf_counter() - start
                if data_record:  # calibration has read the data: record the files it did not use
                    data_record["skipped_files"] = [file.to_json() for file in source.skipped_files]
                start = time.perf_counter()
                with steps.step("save"):
                    conversion.write(stage.path)
                timings["save_s"] = time.perf_counter() - start
                timings.update({f"{config.backend.value}_{k}": v for k, v in conversion.timings.items()})
                # Inside the staged output: a warmup file that cannot be written leaves no model behind.
                start = time.perf_counter()
                serving_warmup = write_conversion_warmup(
                    stage.path, loaded.signature, config,
                    calibration_data=calibration_data if "calibration_data" in data_record else None,
                    build_input_fn=build_input_fn, preprocess=preprocess, input_shape=input_shape,
                    model_hint=loaded.model_info, progress=progress)
                timings["warmup_s"] = time.perf_counter() - start
                metadata = {
                    "toolkit": "tftrt_toolkit",
                    "toolkit_version": __version__,
                    "tensorflow_version": env.tensorflow_version,
                    "keras_version": env.keras_version,
                    "tensorrt_version": env.tensorrt_loaded_version,
                    "backend": conversion.backend,
                    "backend_reason": why,
                    "precision": conversion.precision,
                    "config": config.to_json(),
                    "source": spec.to_json(),
                    "signature": loaded.signature.to_json(),
                    "model_info": {k: v for k, v in loaded.model_info.items() if k != "tftrt_toolkit"},
                    "data": data_record,
                    # How images become this model's inputs (None: it takes none); predict, validate,
                    # benchmark and run on this model default to it (data/preprocess.py reads it back).
                    "preprocess": image_mode,
                    "conversion_summary": conversion.summary,
                    # What the model needs from the TF that serves it (e.g. oneDNN on, for int8).
                    "runtime": conversion.summary.get("runtime", {"requires_onednn": False}),
                    "serving_warmup": serving_warmup,
                    "timings": {k: round(v, 3) for k, v in timings.items()},
                    "environment": {
                        "cpu_model": env.cpu_model, "cpu_features": list(env.cpu_features),
                        "gpus": list(env.gpus), "platform": env.platform,
                    },
                }
                artifacts.write_metadata(stage.path, metadata)
                stage.commit()
        finally:
            if owns_model:
                loaded.close()
        progress(f"saved {target}")
        return ConversionRecord(target, artifacts.read_metadata(target))


def _calibration_fn(loaded: LoadedModel, config: ConversionConfig, calibration_data, preprocess,
                    input_shape, strict_data: bool, progress: Progress):
    from tftrt_toolkit.data import calibration_input_fn, open_source

    source = open_source(calibration_data, loaded.signature, preprocess=preprocess,
                         input_shape=input_shape, model_hint=loaded.model_info, strict=strict_data)
    progress(f"calibrating on {config.calibration_steps} batches of {config.batch_size} from {calibration_data} "
             f"(preprocess: {source.preprocess})")
    return calibration_input_fn(source, batch_size=config.batch_size, steps=config.calibration_steps,
                                progress=progress.bar_requested), source


def calibration_sized_to(config: ConversionConfig, data, loaded: LoadedModel, *, input_shape=None) -> ConversionConfig:
    """``config`` with int8 calibration sized to all of a small data set (up to steps x batch size samples).

    A data set smaller than ``calibration_steps * batch_size`` is then calibrated on whole
    instead of being refused for running out; unbounded data (synthetic) keeps the config's sizes.
    """
    from tftrt_toolkit.data import open_source

    count = open_source(data, loaded.signature, model_hint=loaded.model_info, input_shape=input_shape).count()
    if not count:
        return config  # unbounded (synthetic): the config's own steps and batch size
    batch_size = min(config.batch_size, count)
    return config.replace(batch_size=batch_size, calibration_steps=min(config.calibration_steps, count // batch_size))
