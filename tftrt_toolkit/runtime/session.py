"""Run a SavedModel the way a user would serve it: plain ``tf.saved_model.load`` and one signature.

    with ModelRunner("out/bf16") as runner:
        outputs = runner.run({"images": batch})      # {"probabilities": np.ndarray}

``ModelRunner`` is the one place predict, validate and benchmark touch TensorFlow to run
a model. It accepts anything ``load_model`` does (a SavedModel directory, a .keras file,
keras:NAME, a Hub handle) or an already loaded ``LoadedModel``; it never uses toolkit
code at run time, so what it measures is what ``tf.saved_model.load`` users get.

``configure_threads`` sets TensorFlow's thread pools; TF fixes them when its runtime
starts (the first op or model load), so call it before anything runs. A model ``tune`` chose
carries the threading it is best served with (``chosen_by.serving``: e.g. one intra-op thread
per request at batch 1); ``ModelRunner`` and batch-predict's workers apply it with
``apply_tuned_threads`` where nothing else has set TF's pools yet.
"""

from __future__ import annotations

import os
import time
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np

from tftrt_toolkit.errors import ConfigError, DataError, first_line
from tftrt_toolkit.models.loader import LoadedModel, load_model, load_signature_function
from tftrt_toolkit.signature import ModelSignature
from tftrt_toolkit.models.spec import ModelSpec

ModelLike = Union[str, "os.PathLike[str]", ModelSpec, LoadedModel]
Threads = Tuple[Optional[int], Optional[int]]


def configure_threads(intra_op_threads: Optional[int] = None, inter_op_threads: Optional[int] = None) -> Dict[str, int]:
    """Set TensorFlow's intra-/inter-op thread pools; None leaves a pool as it is.

    Returns the settings now in force ({"intra_op_threads", "inter_op_threads"}; 0 means
    TensorFlow's own choice, usually one thread per core). Setting a value TF already has
    is always fine. Raises ConfigError for a negative value, or when TF's runtime has
    already started (a model was loaded or an op ran in this process) with other values,
    because TF ignores changes after that point.
    """
    import tensorflow as tf

    threading = tf.config.threading
    pools = (
        ("intra_op_threads", intra_op_threads, threading.get_intra_op_parallelism_threads, threading.set_intra_op_parallelism_threads),
        ("inter_op_threads", inter_op_threads, threading.get_inter_op_parallelism_threads, threading.set_inter_op_parallelism_threads),
    )
    for name, value, get, set_ in pools:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"{name}={value!r} is not valid; use a whole number >= 0 (0 = TensorFlow's choice).")
        if get() == value:
            continue
        try:
            set_(int(value))
        except RuntimeError:
            raise ConfigError(
                f"cannot set {name}={value}: TensorFlow's runtime already started in this process with "
                f"{name}={get()} (0 = TF's choice); set threads before loading any model or running any op "
                "(in a notebook: restart the kernel and call configure_threads first)."
            ) from None
    return current_threads()


def apply_tuned_threads(metadata: Optional[dict]) -> Tuple[Optional[Dict[str, int]], str]:
    """Set TF's pools to the threading tune chose for a model (``artifacts.serving_threads``), unless already set.

    Returns (the threads now in force when the model's choice holds, else None; a note saying
    what happened, "" for a model tune did not choose). Threads someone set explicitly (a flag,
    ``configure_threads``) win; so does a TF runtime that already started (TF cannot change then).
    """
    from tftrt_toolkit.artifacts import serving_threads

    serving = serving_threads(metadata)
    if not serving:
        return None, ""
    wanted = {"intra_op_threads": int(serving.get("intra_op_threads") or 0),
              "inter_op_threads": int(serving.get("inter_op_threads") or 0)}
    text = f"intra={wanted['intra_op_threads'] or 'auto'} inter={wanted['inter_op_threads'] or 'auto'}"
    # tune's choice, or what a conversion split into token branches records for itself.
    who = "tune chose" if ((metadata or {}).get("chosen_by") or {}).get("serving") else "its conversion recorded"
    current = current_threads()
    if current == wanted:
        return current, f"TF threads {text}, as {who} for this model ({serving.get('objective')})"
    if any(current.values()):
        return None, (f"{who} TF threads {text} for this model; kept intra={current['intra_op_threads'] or 'auto'} "
                      f"inter={current['inter_op_threads'] or 'auto'}, set before it loaded")
    try:
        in_force = configure_threads(**wanted)
    except ConfigError:
        return None, (f"{who} TF threads {text} for this model; TF's runtime had already started in this "
                      "process, so its pools stay as they are")
    return in_force, f"TF threads {text}, as {who} for this model ({serving.get('objective')})"


def current_threads() -> Dict[str, int]:
    """TensorFlow's thread-pool settings as {"intra_op_threads", "inter_op_threads"} (0 = TF's choice)."""
    import tensorflow as tf

    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


class ModelRunner:
    """A model loaded with plain TensorFlow, run one batch at a time; a context manager.

    Args:
      model: a model spec (SavedModel dir, .keras/.h5, keras:NAME, hub:HANDLE) or a
        ``LoadedModel`` (then the caller keeps ownership of it).
      weights, signature_key, unsafe_deserialization, custom_objects: as for ``load_model``.
      name: how reports call this model (default: the spec as given).

      tuned_threads: apply the threading tune chose for this model (``apply_tuned_threads``)
        before loading it, where nothing has set TF's pools yet; ``threads_note`` says what happened.

    Attributes (after ``load()`` / entering the ``with``): ``signature``, ``model_info``
    (model card + toolkit metadata), ``saved_model_dir``, ``load_seconds``, ``threads_note``.

    Raises ModelLoadError when the model cannot be loaded, DataError from ``run`` when
    inputs are missing or do not fit the signature.
    """

    def __init__(self, model: ModelLike, *, weights: Optional[str] = "imagenet", signature_key: Optional[str] = None,
                 unsafe_deserialization: bool = False, custom_objects=None, name: Optional[str] = None,
                 tuned_threads: bool = True):
        self._model = model
        self._load_options = dict(weights=weights, signature_key=signature_key, unsafe_deserialization=unsafe_deserialization,
                                  custom_objects=custom_objects)
        if isinstance(model, LoadedModel):
            self.name = name or model.spec.text
        elif isinstance(model, ModelSpec):
            self.name = name or model.text
        else:
            self.name = name or os.fspath(model)
        self.loaded_model: Optional[LoadedModel] = None
        self._owns_loaded_model = False
        # TF-TRT pitfall: the signature function does not own the variables; keep the
        # object tf.saved_model.load returned alive for as long as the function is used.
        self._saved_model_object = None
        self._function = None
        self.load_seconds: Optional[float] = None
        self._tuned_threads = tuned_threads
        self.threads_note = ""

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> "ModelRunner":
        """Load the model (once); returns self."""
        if self._function is not None:
            return self
        from tftrt_toolkit import onednn

        onednn.turn_on_before_tensorflow()  # before TF is imported, where it is not yet
        if self._tuned_threads:  # before the model loads: TF fixes its pools when its runtime starts
            self.threads_note = apply_tuned_threads(self._metadata_before_loading())[1]
        start = time.perf_counter()
        if isinstance(self._model, LoadedModel):
            self.loaded_model = self._model
        else:
            self.loaded_model = load_model(self._model, **self._load_options)
            self._owns_loaded_model = True
        try:
            self._saved_model_object, self._function = load_signature_function(
                self.loaded_model.saved_model_dir, self.loaded_model.signature.key)
        except BaseException:
            self.close()
            raise
        self.load_seconds = time.perf_counter() - start
        return self

    def _metadata_before_loading(self) -> Optional[dict]:
        from tftrt_toolkit.artifacts import read_metadata

        if isinstance(self._model, LoadedModel):
            return self._model.toolkit_metadata
        path = self._model.location if isinstance(self._model, ModelSpec) else os.fspath(self._model)
        return read_metadata(path) if os.path.isdir(path) else None

    def close(self) -> None:
        """Drop the TF objects and any temporary export this runner made."""
        self._function = None
        self._saved_model_object = None
        if self._owns_loaded_model and self.loaded_model is not None:
            self.loaded_model.close()
        self._owns_loaded_model = False

    def __enter__(self) -> "ModelRunner":
        return self.load()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "loaded" if self._function is not None else "not loaded"
        return f"ModelRunner({self.name!r}, {state})"

    # ------------------------------------------------------------------ facts
    def _require_loaded(self) -> LoadedModel:
        if self._function is None or self.loaded_model is None:
            raise ConfigError(f"model {self.name!r} is not loaded; use `with ModelRunner(...) as runner:` or call load() first.")
        return self.loaded_model

    @property
    def signature(self) -> ModelSignature:
        return self._require_loaded().signature

    @property
    def model_info(self) -> dict:
        return self._require_loaded().model_info

    @property
    def saved_model_dir(self) -> str:
        return self._require_loaded().saved_model_dir

    @property
    def toolkit_metadata(self) -> Optional[dict]:
        """What tftrt_toolkit recorded when it converted this model (None for other models)."""
        return self._require_loaded().toolkit_metadata

    def describe(self) -> dict:
        """The model's identity for reports: name, signature, and backend/precision if converted."""
        metadata = self.toolkit_metadata or {}
        return {
            "model": self.name,
            "saved_model_dir": self.saved_model_dir,
            "signature": self.signature.key,
            "backend": metadata.get("backend"),
            "precision": metadata.get("precision"),
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 3),
            **({"tuned_threads": self.threads_note} if self.threads_note else {}),
        }

    # ------------------------------------------------------------------ running
    def prepare(self, inputs: Mapping[str, np.ndarray]) -> dict:
        """Check numpy inputs against the signature and make TF tensors of its dtypes (work to keep off a benchmark clock).

        Raises DataError for a missing or unexpected input name, a shape the signature rules out, or values
        that cannot take the input's dtype.
        """
        import tensorflow as tf

        signature = self.signature
        missing = [name for name in signature.input_names if name not in inputs]
        extra = [name for name in inputs if name not in signature.input_names]
        if missing or extra:
            raise DataError(
                f"model {self.name!r} takes inputs {', '.join(signature.input_names)}; "
                + (f"missing {', '.join(missing)}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"unexpected {', '.join(extra)}" if extra else "")
            )
        tensors = {}
        for info in signature.inputs:
            # Checked here, not left to TF: some kernels CHECK-fail on a wrong rank and abort the process.
            shape = np.shape(inputs[info.name])
            if info.shape is not None and (len(shape) != len(info.shape) or any(
                    want is not None and want != got for want, got in zip(info.shape, shape))):
                expected = "[" + ",".join("?" if d is None else str(d) for d in info.shape) + "]"
                raise DataError(f"input {info.name!r} takes shape {expected}; got {list(shape)}")
            try:
                tensors[info.name] = tf.constant(np.asarray(inputs[info.name]), dtype=info.dtype)
            except (TypeError, ValueError) as error:
                raise DataError(f"input {info.name!r} cannot be made {info.dtype}: {error}") from error
        return tensors

    def run_prepared(self, tensors: Mapping[str, object]) -> Dict[str, np.ndarray]:
        """Run on tensors from ``prepare``; outputs are copied to host memory (``.numpy()``) before returning."""
        self._require_loaded()
        import tensorflow as tf

        try:
            outputs = self._function(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            first = first_line(error)
            shapes = ", ".join(f"{name}{list(getattr(t, 'shape', []))}" for name, t in tensors.items())
            raise DataError(f"model {self.name!r} rejected inputs {shapes}: {first}") from error
        return {name: value.numpy() for name, value in outputs.items()}

    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one batch: {input name: array with batch dim} -> {output name: numpy array}."""
        return self.run_prepared(self.prepare(inputs))


def open_runner(model: Union[ModelLike, ModelRunner], **load_options) -> Tuple[ModelRunner, bool]:
    """(a loaded ModelRunner, whether the caller must close it): reuse a runner, or make one."""
    if isinstance(model, ModelRunner):
        return model.load(), False
    return ModelRunner(model, **load_options).load(), True
