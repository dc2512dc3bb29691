"""Load any model spec into a ``LoadedModel``: a SavedModel directory plus its discovered signature.

Every kind ends on the same path: Keras files, keras.applications names and Hub models
without signatures are exported once into a temporary SavedModel, so backends and the
runtime only ever see ``saved_model_dir`` + ``signature``. Signatures are read from the
SavedModel's own SignatureDefs (names, dtypes, shapes), never guessed.

The input model is only ever read. Temporary exports live until ``LoadedModel.close()``
(or the end of a ``with`` block).
"""

from __future__ import annotations

import difflib
import gc
import json
import os
import shutil
import tempfile
from typing import Dict, Optional, Tuple, Union

from tftrt_toolkit.errors import ModelLoadError, first_line
from tftrt_toolkit.models.keras_files import CustomObjects, load_keras_file
from tftrt_toolkit.signature import ModelSignature, TensorInfo
from tftrt_toolkit.models.spec import ModelKind, ModelSpec, parse_model_spec

DEFAULT_SIGNATURE_KEY = "serving_default"
MODEL_CARD_PATH = os.path.join("assets.extra", "tftrt_model_info.json")
METADATA_PATH = os.path.join("assets.extra", "tftrt_toolkit.json")


class LoadedModel:
    """A model ready for conversion or running: where its SavedModel is and what it takes.

    Attributes:
      spec: what the user asked for.
      saved_model_dir: a SavedModel directory (the user's own, or a temporary export).
      signature: the selected signature's key, inputs (sorted by name: TF's positional order) and outputs.
      model_info: what we know beyond the graph: preprocessing convention, labels, the
        original spec for converted models (from the model card or toolkit metadata).
    """

    def __init__(self, spec: ModelSpec, saved_model_dir: str, signature: ModelSignature,
                 model_info: Optional[dict] = None, temp_dir: Optional[str] = None,
                 available_signatures: Tuple[str, ...] = ()):
        self.spec = spec
        self.saved_model_dir = saved_model_dir
        self.signature = signature
        self.model_info = dict(model_info or {})
        self.available_signatures = available_signatures
        self._temp_dir = temp_dir

    @property
    def is_temporary_export(self) -> bool:
        return self._temp_dir is not None

    @property
    def toolkit_metadata(self) -> Optional[dict]:
        """The metadata tftrt_toolkit wrote, when this model is one of its outputs."""
        return self.model_info.get("tftrt_toolkit")

    def close(self) -> None:
        if self._temp_dir and os.path.isdir(self._temp_dir):
            shutil.rmtree(self._temp_dir, ignore_errors=True)
        self._temp_dir = None

    def __enter__(self) -> "LoadedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}:{t.dtype}{list(t.shape) if t.shape is not None else '[?]'}" for t in self.signature.inputs)
        return f"LoadedModel({self.spec.text!r}, signature={self.signature.key!r}, inputs=[{ins}])"


# --------------------------------------------------------------------------- signatures

def _tensor_info(name: str, proto) -> TensorInfo:
    from tensorflow.python.framework import dtypes

    try:
        dtype = dtypes.as_dtype(proto.dtype)
        dtype_name = "string" if dtype == dtypes.string else dtype.as_numpy_dtype.__name__
        if dtype == dtypes.bfloat16:
            dtype_name = "bfloat16"
    except (TypeError, ValueError):
        dtype_name = f"unknown({proto.dtype})"
    if proto.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(None if d.size < 0 else int(d.size) for d in proto.tensor_shape.dim)
    return TensorInfo(name=name, shape=shape, dtype=dtype_name)


def read_signatures(saved_model_dir: str) -> Dict[str, ModelSignature]:
    """All serving signatures of a SavedModel, read from saved_model.pb without loading weights."""
    from tensorflow.python.saved_model import loader_impl

    if not os.path.isdir(saved_model_dir):
        raise ModelLoadError(f"{saved_model_dir!r} is not a directory; pass a SavedModel directory.")
    if not any(os.path.exists(os.path.join(saved_model_dir, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
        if not os.listdir(saved_model_dir):
            raise ModelLoadError(f"{saved_model_dir!r} is an empty directory; pass a SavedModel directory.")
        raise ModelLoadError(
            f"{saved_model_dir!r} has no saved_model.pb, so it is not a SavedModel; "
            "pass the directory written by tf.saved_model.save / model.export, or a .keras/.h5 file."
        )
    try:
        saved_model = loader_impl.parse_saved_model(saved_model_dir)
    except Exception as error:  # protobuf and IO errors come in many types; all mean "unreadable"
        raise ModelLoadError(
            f"saved_model.pb in {saved_model_dir!r} cannot be parsed ({type(error).__name__}); "
            "the file is truncated or corrupt: re-export the model."
        ) from error
    signatures: Dict[str, ModelSignature] = {}
    for meta_graph in saved_model.meta_graphs:
        if "serve" not in meta_graph.meta_info_def.tags and len(saved_model.meta_graphs) > 1:
            continue
        for key, sig in meta_graph.signature_def.items():
            if key.startswith("__"):  # __saved_model_init_op and friends are not callable signatures
                continue
            inputs = tuple(sorted((_tensor_info(n, t) for n, t in sig.inputs.items()), key=lambda t: t.name))
            outputs = tuple(sorted((_tensor_info(n, t) for n, t in sig.outputs.items()), key=lambda t: t.name))
            signatures[key] = ModelSignature(key=key, inputs=inputs, outputs=outputs)
    return signatures


def select_signature(signatures: Dict[str, ModelSignature], key: Optional[str], where: str) -> ModelSignature:
    """The signature named ``key``; default "serving_default", or the only one there is."""
    if key:
        if key not in signatures:
            available = ", ".join(sorted(signatures)) or "none"
            raise ModelLoadError(f"{where} has no signature {key!r}; available: {available}. Pass one with --signature=KEY.")
        return signatures[key]
    if DEFAULT_SIGNATURE_KEY in signatures:
        return signatures[DEFAULT_SIGNATURE_KEY]
    if len(signatures) == 1:
        return next(iter(signatures.values()))
    raise ModelLoadError(
        f"{where} has several signatures ({', '.join(sorted(signatures))}) and none is {DEFAULT_SIGNATURE_KEY!r}; "
        "choose one with --signature=KEY."
    )


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def read_model_info(saved_model_dir: str) -> dict:
    """The model card and toolkit metadata stored inside a SavedModel, if any."""
    info = dict(_read_json(os.path.join(saved_model_dir, MODEL_CARD_PATH)) or {})
    metadata = _read_json(os.path.join(saved_model_dir, METADATA_PATH))
    if metadata:
        info["tftrt_toolkit"] = metadata
        # A converted model keeps the source's conventions (preprocessing, labels).
        for key, value in (metadata.get("model_info") or {}).items():
            info.setdefault(key, value)
    return info


# --------------------------------------------------------------------------- per-kind loading

def _export_signature_from_call(saved_model_dir: str, export_dir: str, where: str) -> None:
    """Wrap a signature-less SavedModel's traced ``__call__`` as serving_default (Hub models often lack signatures)."""
    import tensorflow as tf

    try:
        obj = tf.saved_model.load(saved_model_dir)
    except Exception as error:
        raise ModelLoadError(f"{where} could not be loaded by TensorFlow ({type(error).__name__}: {first_line(error, limit=200)}).") from error
    call = getattr(obj, "__call__", None)
    concrete = list(getattr(call, "concrete_functions", []) or [])
    # Prefer a trace whose inputs are all tensors (no Python bools like training=False left open).
    usable = [f for f in concrete if f.structured_input_signature and all(
        isinstance(s, tf.TensorSpec) for s in tf.nest.flatten(f.structured_input_signature))]
    if not usable:
        raise ModelLoadError(
            f"{where} has no signatures and no traced __call__ to wrap; re-save it with "
            "tf.saved_model.save(model, dir, signatures={'serving_default': fn.get_concrete_function(spec)})."
        )
    fn = usable[0]
    specs = [s for s in tf.nest.flatten(fn.structured_input_signature)]
    names = [s.name or f"input_{i}" for i, s in enumerate(specs)]
    named_specs = [tf.TensorSpec(s.shape, s.dtype, name=n) for s, n in zip(specs, names)]

    @tf.function(input_signature=named_specs)
    def serving(*args):
        positional, keyword = tf.nest.pack_sequence_as(fn.structured_input_signature, list(args))
        outputs = fn(*positional, **keyword)
        if isinstance(outputs, dict):
            return outputs
        flat = tf.nest.flatten(outputs)
        return {f"output_{i}": t for i, t in enumerate(flat)}

    tf.saved_model.save(obj, export_dir, signatures={DEFAULT_SIGNATURE_KEY: serving.get_concrete_function()})


def _keras_application_constructor(name: str):
    import keras

    apps = {n: getattr(keras.applications, n) for n in dir(keras.applications)
            if not n.startswith("_") and n[0].isupper() and callable(getattr(keras.applications, n))}
    by_lower = {n.lower(): n for n in apps}
    if name.lower() in by_lower:
        return by_lower[name.lower()], apps[by_lower[name.lower()]]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)
    suggestion = f" Did you mean {', '.join('keras:' + by_lower[c] for c in close)}?" if close else ""
    raise ModelLoadError(f"keras.applications has no model {name!r}.{suggestion} See keras.applications for the list.")


def _load_keras_application(spec: ModelSpec):
    canonical, constructor = _keras_application_constructor(spec.location)
    if spec.weights not in (None, "imagenet") and not os.path.isfile(spec.weights):
        raise ModelLoadError(f"weights file {spec.weights!r} does not exist; pass --weights=imagenet, none, or a weights file.")
    try:
        model = constructor(weights=spec.weights)
    except Exception as error:
        message = first_line(error, limit=200)
        if spec.weights == "imagenet":
            raise ModelLoadError(
                f"could not get ImageNet weights for {canonical} ({message}); they are downloaded on first use, "
                "so this needs network access or a Keras cache (~/.keras/models). Use --weights=none or a weights file offline."
            ) from error
        raise ModelLoadError(f"could not build keras:{canonical} with weights={spec.weights!r}: {message}") from error
    return canonical, model


def _resolve_hub(spec: ModelSpec) -> str:
    if os.path.isdir(spec.location):
        if os.path.exists(os.path.join(spec.location, "tfhub_module.pb")):
            raise ModelLoadError(
                f"{spec.location!r} is in the TF1 Hub format, which TF2 conversion cannot use; pick the TF2 SavedModel "
                "version of this model on TF-Hub/Kaggle."
            )
        return spec.location
    try:
        import tensorflow_hub as hub
    except ImportError as error:
        raise ModelLoadError("tensorflow-hub is not installed; pip install tensorflow-hub==0.16.1.") from error
    try:
        return hub.resolve(spec.location)
    except Exception as error:
        raise ModelLoadError(
            f"could not fetch TF-Hub model {spec.location!r} ({type(error).__name__}); this needs network access "
            "or a cached copy (TFHUB_CACHE_DIR). Offline, download it elsewhere and pass the local directory."
        ) from error


def load_model(model: Union[str, ModelSpec], *, weights: Optional[str] = "imagenet",
               signature_key: Optional[str] = None, unsafe_deserialization: bool = False,
               custom_objects: CustomObjects = None) -> LoadedModel:
    """Load a model spec and discover its signature; the result owns any temporary export.

    ``custom_objects`` gives Keras files the classes their custom layers (or subclassed
    model) need: a dict {name: class}, a module, a module path or a .py file (see
    ``resolve_custom_objects``).

    Raises ModelLoadError (missing path, not a model, corrupt file, a custom class not
    given, weights that did not all load, unknown keras name, unreachable Hub handle,
    missing signature) with a message saying what to do; ConfigError when
    ``custom_objects`` cannot be imported.
    """
    spec = model if isinstance(model, ModelSpec) else parse_model_spec(model, weights=weights)
    temp_dir = None
    model_info: dict = {}
    try:
        if spec.kind is ModelKind.SAVED_MODEL:
            saved_model_dir = spec.location
            signatures = read_signatures(saved_model_dir)
            if not signatures:
                temp_dir = tempfile.mkdtemp(prefix="tftrt-export-")
                saved_model_dir = os.path.join(temp_dir, "saved_model")
                _export_signature_from_call(spec.location, saved_model_dir, repr(spec.location))
                signatures = read_signatures(saved_model_dir)
            model_info.update(read_model_info(spec.location))
        elif spec.kind is ModelKind.HUB:
            resolved = _resolve_hub(spec)
            saved_model_dir = resolved
            signatures = read_signatures(resolved)
            if not signatures:
                temp_dir = tempfile.mkdtemp(prefix="tftrt-export-")
                saved_model_dir = os.path.join(temp_dir, "saved_model")
                _export_signature_from_call(resolved, saved_model_dir, f"Hub model {spec.location!r}")
                signatures = read_signatures(saved_model_dir)
            model_info.update(read_model_info(resolved))
        else:
            from tftrt_toolkit.models.keras_export import export_keras_model

            if spec.kind is ModelKind.KERAS_APPLICATION:
                canonical, keras_model = _load_keras_application(spec)
                spec = ModelSpec(spec.kind, canonical, spec.weights)
                model_info.update(name=canonical, keras_application=canonical,
                                  weights=spec.weights or "none")
                if spec.weights == "imagenet":
                    model_info["labels"] = "imagenet1000"
            else:
                keras_model = load_keras_file(spec.location, custom_objects=custom_objects,
                                              unsafe_deserialization=unsafe_deserialization)
                model_info.update(name=keras_model.name)
            temp_dir = tempfile.mkdtemp(prefix="tftrt-export-")
            saved_model_dir = os.path.join(temp_dir, "saved_model")
            export_keras_model(keras_model, saved_model_dir)
            # Everything later reads the export; the in-memory model (its weights: 528 MB for
            # VGG16) sits in reference cycles that only the cycle collector frees.
            del keras_model
            gc.collect()
            signatures = read_signatures(saved_model_dir)
        signature = select_signature(signatures, signature_key, repr(spec.text))
    except BaseException:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return LoadedModel(spec, saved_model_dir, signature, model_info, temp_dir, tuple(sorted(signatures)))


def load_signature_function(saved_model_dir: str, signature_key: str, restore_variables: bool = True):
    """(loaded_object, signature_function) from plain ``tf.saved_model.load``.

    Keep the returned object alive while using the function: the function does not own
    the variables, and they are freed with the object (a classic TF-TRT pitfall). With
    ``restore_variables=False`` the variables are left uninitialised (nothing of the checkpoint
    is read): for freezing, which reads the values it needs from the checkpoint itself.
    """
    from tftrt_toolkit import onednn

    onednn.turn_on_before_tensorflow()  # Beam workers and runners: before TF is imported, where it is not yet
    import tensorflow as tf

    check_runtime_requirements(saved_model_dir)
    try:
        options = None if restore_variables else tf.saved_model.LoadOptions(experimental_skip_checkpoint=True)
        loaded = tf.saved_model.load(saved_model_dir, options=options)
    except Exception as error:
        variables_problem = _unreadable_variables(saved_model_dir)
        if variables_problem:
            raise unreadable_variables_error(saved_model_dir, variables_problem) from error
        first = first_line(error, limit=200)
        raise ModelLoadError(
            f"TensorFlow could not load the SavedModel in {saved_model_dir!r} ({type(error).__name__}: {first}); "
            "its variables or graph may be corrupt: re-export it."
        ) from error
    try:
        return loaded, loaded.signatures[signature_key]
    except KeyError:
        raise ModelLoadError(
            f"{saved_model_dir!r} has no signature {signature_key!r}; available: {', '.join(loaded.signatures) or 'none'}."
        ) from None


def unreadable_variables_error(saved_model_dir: str, problem: str) -> ModelLoadError:
    """The one error for a SavedModel whose checkpoint does not read back (``problem``: TensorFlow's first line)."""
    return ModelLoadError(
        f"the variables (weights) of the SavedModel in {saved_model_dir!r} are missing, truncated or corrupt "
        f"({problem}); re-export the model, or copy it again from where it came from.")


def _runtime_record(saved_model_dir: str) -> Tuple[dict, dict]:
    """(the toolkit's metadata, its ``runtime`` record) for a model; empty for models it did not convert."""
    from tftrt_toolkit import artifacts

    metadata = artifacts.read_metadata(saved_model_dir) or {}
    return metadata, metadata.get("runtime") or {}


def requires_onednn(saved_model_dir: str) -> bool:
    """Whether the model needs TF's oneDNN ops to run, from the ``runtime`` record the toolkit
    writes into its outputs' metadata (False for models it did not convert)."""
    return bool(_runtime_record(saved_model_dir)[1].get("requires_onednn"))


def check_runtime_requirements(saved_model_dir: str) -> None:
    """BackendUnavailable (one line) when this process cannot run the model: it needs TF's oneDNN ops and
    they are off, or they are on and need a CPU this is not (bf16 with oneDNN needs AVX512).

    Models without a ``runtime`` record (not converted by this toolkit) are not checked.
    """
    from tftrt_toolkit import onednn
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.errors import BackendUnavailable

    metadata, runtime = _runtime_record(saved_model_dir)
    what = f"the {metadata.get('precision', '')} model in {saved_model_dir!r}"
    if runtime.get("requires_onednn") and not onednn.enabled_in_this_process():
        raise BackendUnavailable(onednn.off_message(f"{what} ({runtime.get('why', 'oneDNN-only ops')})"))
    if (runtime.get("onednn_needs_cpu") == "AVX512" and onednn.enabled_in_this_process()
            and not probe().cpu_has_avx512):
        # oneDNN has no AVX2 bf16 kernels: TF would abort at the first call with "Graph execution error".
        raise BackendUnavailable(onednn.bf16_without_avx512_message(what, runtime.get("requires_onednn", False)))


def _unreadable_variables(saved_model_dir: str) -> Optional[str]:
    """Why the SavedModel's checkpoint (variables/variables.*) cannot be read, or None when it can.

    Only called after tf.saved_model.load failed: its errors ("Read less bytes than requested",
    "not an sstable") do not say which file is bad, so every tensor is read back once here.
    """
    import tensorflow as tf

    prefix = os.path.join(saved_model_dir, "variables", "variables")
    if not os.path.exists(prefix + ".index"):
        return None  # a model without variables: the graph is what failed
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # the checkpoint reader raises IndexError, OpError, DataLossError...
        return first_line(error, limit=160)
    return None
