"""Load a Keras model file (.keras, .h5/.hdf5; Keras 2 and 3 writers) completely, or refuse it in one line.

Three things users' files need beyond ``keras.saving.load_model``:

- **Custom classes.** A model with a custom layer (or a subclassed model) names a class
  Keras can only find when its module is imported; ``custom_objects`` (the CLI's
  ``--custom_objects=module.path``) imports it. Without it the error names the class.
- **Weights that did not load.** Keras refuses most mismatches, but skips some with only a
  warning (nested containers it cannot find, shape mismatches when skipping is on); a
  model with freshly initialised weights is not the user's model, so every such case is a
  ``ModelLoadError`` naming the weights.
- **Clear errors** for files that are not Keras files at all.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import types
import warnings
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from tftrt_toolkit.errors import ConfigError, ModelLoadError, first_line

log = logging.getLogger(__name__)

#: What ``custom_objects=`` takes: a dict {name: class or function}, a module, a module
#: path ("my_pkg.layers") or a .py file path, or a list of those.
CustomObjects = Union[None, str, types.ModuleType, Mapping[str, Any], Sequence[Union[str, types.ModuleType, Mapping[str, Any]]]]

_HOW_TO_PROVIDE = ("pass the module that defines it: --custom_objects=module.path (or a .py file), "
                   "or custom_objects= in the Python API")

# Keras' own words when it could not resolve a class or function named in the model's config.
_MISSING_CLASS_PATTERNS = (
    re.compile(r"Could not locate (?:class|function) '([^']+)'"),
    re.compile(r"Unknown (?:layer|object|activation|initializer|regularizer|constraint)[^:']*: '?([A-Za-z_][\w>.]*)'?"),
    re.compile(r"Could not deserialize class '([^']+)'"),
    re.compile(r"Cannot deserialize object of type `([^`]+)`"),  # tf_keras
)

# Packages whose classes Keras finds by itself.
_KERAS_PACKAGES = ("keras", "tf_keras", "keras_hub", "keras_cv", "keras_nlp", "builtins", "tensorflow")

# Warnings with which Keras tells that some weights kept their initial values.
_SKIPPED_WEIGHT_FRAGMENTS = ("could not be loaded", "skipping loading weights", "skipping nested container",
                             "freshly-initialized weights", "unmatched", "were not loaded")


def resolve_custom_objects(custom_objects: CustomObjects) -> Dict[str, Any]:
    """The ``{name: object}`` dict Keras needs, from a dict, module, module path, .py file, or a list of them.

    Importing a module also runs its ``@keras.saving.register_keras_serializable``
    decorators, so registered classes resolve under their registered names too. Module
    paths are imported as Python would, then from the current directory.

    Raises ConfigError when a module or file cannot be imported, or an entry is of another type.
    """
    if custom_objects is None:
        return {}
    if isinstance(custom_objects, Mapping):
        return dict(custom_objects)
    if isinstance(custom_objects, types.ModuleType):
        return _public_objects(custom_objects)
    if isinstance(custom_objects, str):
        entries = [part.strip() for part in custom_objects.split(",") if part.strip()]
        resolved: Dict[str, Any] = {}
        for entry in entries:
            resolved.update(_public_objects(_import(entry)))
        return resolved
    if isinstance(custom_objects, (list, tuple)):
        resolved = {}
        for entry in custom_objects:
            resolved.update(resolve_custom_objects(entry))
        return resolved
    raise ConfigError(f"custom_objects must be a dict, a module, a module path or a .py file, not {type(custom_objects).__name__}")


def _import(entry: str) -> types.ModuleType:
    if entry.endswith(".py"):
        path = os.path.abspath(os.path.expanduser(entry))
        if not os.path.isfile(path):
            raise ConfigError(f"--custom_objects file {entry!r} does not exist; pass a module path or an existing .py file")
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # classes pickle and print under this module name
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # the user's module can fail in any way; say where
            sys.modules.pop(name, None)
            raise ConfigError(f"--custom_objects file {entry!r} failed to import ({type(error).__name__}: {first_line(error, limit=240)})") from error
        return module
    try:
        try:
            return importlib.import_module(entry)
        except ModuleNotFoundError as error:
            # The `tftrt` console script does not put the current directory on sys.path,
            # but a user's my_layers.py usually sits there.
            if error.name != entry.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())
            try:
                return importlib.import_module(entry)
            finally:
                sys.path.remove(os.getcwd())
    except Exception as error:
        raise ConfigError(
            f"--custom_objects module {entry!r} cannot be imported ({type(error).__name__}: {first_line(error, limit=240)}); "
            "pass an importable module path (its directory on PYTHONPATH) or a .py file"
        ) from error


def _public_objects(module: types.ModuleType) -> Dict[str, Any]:
    """Classes and functions defined in ``module`` (not imported into it), by name."""
    found = {}
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if getattr(value, "__module__", None) == module.__name__:
            found[name] = value
    return found


def missing_custom_class(error_text: str) -> Optional[str]:
    """The class or function name Keras could not resolve, from its error message; None when it is another error."""
    for pattern in _MISSING_CLASS_PATTERNS:
        match = pattern.search(error_text)
        if match:
            return match.group(1)
    return None


def failed_weights(error_text: str) -> Optional[str]:
    """What did not load, from Keras' error about weights ("dense_2, dense_3 (expected 2 variables, received 0)"); else None."""
    if "could not be loaded" in error_text:
        listed = re.search(r"List of objects that could not be loaded:\s*\[(.*?)\]\s*$", error_text, re.S)
        names = re.findall(r"name=([^,>]+)", listed.group(1)) if listed else []
        detail = re.search(r"expected (\d+) variables, but received (\d+)", error_text)
        why = f" (expected {detail.group(1)} variables, received {detail.group(2)})" if detail else ""
        return (", ".join(names) or first_line(error_text, limit=240)) + why
    for pattern in (r"Layer count mismatch[^.]*\.[^.]*\.", r"Weight count mismatch for [^.]*\.", r"Shape mismatch in layer[^\n]*"):
        match = re.search(pattern, error_text)
        if match:
            return match.group(0).strip()
    return None


def load_keras_file(path: str, *, custom_objects: CustomObjects = None, unsafe_deserialization: bool = False):
    """Load a .keras/.h5/.hdf5 file with every weight in place; returns the Keras model.

    Raises ModelLoadError, in one line, when the file is not a Keras model (corrupt,
    truncated), uses a custom class not given (naming it and how to provide it), holds a
    Lambda layer in safe mode, or when any weight did not load (naming them). Raises
    ConfigError when ``custom_objects`` cannot be imported.
    """
    import keras

    objects = resolve_custom_objects(custom_objects)
    if unsafe_deserialization:
        log.warning("--unsafe_deserialization: Lambda layers in %s may run arbitrary Python code.", path)
    # Keras reports a .keras file that is not a zip as "File not found", which sends users looking
    # for a path problem; the file exists, its bytes are wrong.
    if path.lower().endswith(".keras") and not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{path!r} is not a valid .keras file (not a zip archive: truncated or corrupt); "
            "re-save the model with model.save('NAME.keras'), or copy it again."
        )
    # A .keras file written by tf_keras (Keras 2) holds Keras 2 configs (batch_input_shape on
    # layers) that Keras 3 refuses; tf_keras, the writer, reads it exactly. Keras 2 .h5 files
    # load in Keras 3's own legacy reader.
    load = keras.saving.load_model
    if path.lower().endswith(".keras") and _keras_version_written(path).startswith("2."):
        import tf_keras

        load = tf_keras.saving.load_model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = load(path, custom_objects=objects or None, compile=False, safe_mode=not unsafe_deserialization)
        except Exception as error:
            raise _load_error(path, error, objects) from error
    skipped = [str(w.message) for w in caught
               if any(fragment in str(w.message).lower() for fragment in _SKIPPED_WEIGHT_FRAGMENTS)]
    for warning in caught:
        if str(warning.message) not in skipped:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if skipped:
        raise ModelLoadError(
            f"{path!r}: weights did not load, so this would not be the saved model: {_skipped_summary(skipped)} "
            "kept freshly initialised values; the file's weight names or shapes do not match its architecture "
            "(damaged, or written by another Keras version): re-save the model with the Keras that trained it, or copy it again."
        )
    return model


def _skipped_summary(messages: List[str]) -> str:
    names = []
    for message in messages:
        found = (re.findall(r"name=([^,>]+)", message) or re.findall(r"at '([^']+)'", message)
                 or re.findall(r"weight (\S+)\.", message) or [first_line(message, limit=120)])
        names.extend(n for n in found if n not in names)
    return ", ".join(names)


def _load_error(path: str, error: Exception, objects: Dict[str, Any]) -> ModelLoadError:
    text = str(error)
    first = first_line(error, limit=240)
    if isinstance(error, zipfile.BadZipFile):
        return ModelLoadError(f"{path!r} is truncated or corrupt ({first}); re-save the model, or copy it again.")
    if "safe_mode" in text or "Lambda" in text:
        return ModelLoadError(
            f"{path!r} contains a Lambda layer whose code would run on loading; refused by Keras safe mode. "
            "Re-run with --unsafe_deserialization only if you trust this file."
        )
    # Keras' own words name the class; when they are vaguer (tf_keras can fail with "'str' object
    # is not callable"), the file's config does.
    missing = missing_custom_class(text) or _unknown_config_class(path, objects)
    if missing:
        given = f" (the custom objects given define {', '.join(sorted(objects))})" if objects else ""
        return ModelLoadError(f"{path!r} uses the custom class {missing!r}, which is not importable here{given}; {_HOW_TO_PROVIDE}.")
    weights = failed_weights(text)
    if weights:
        return ModelLoadError(
            f"{path!r}: weights did not load: {weights}; the file's weight names or shapes do not match its architecture: "
            "re-save the model, or copy it again."
        )
    if isinstance(error, KeyError) and path.lower().endswith((".h5", ".hdf5")):
        # Keras' HDF5 reader looks each layer's weights up by name and fails on the first one missing.
        return ModelLoadError(
            f"{path!r}: weights did not load: no weights for layer {first} in the file; the weight names are damaged "
            "or from another model: re-save the model, or copy it again."
        )
    return ModelLoadError(f"{path!r} could not be loaded as a Keras model: {first}")


def _keras_version_written(path: str) -> str:
    """The Keras version a .keras file records in metadata.json ("" when it records none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return ""


def _unknown_config_class(path: str, objects: Dict[str, Any]) -> Optional[str]:
    """The first non-Keras class named in the file's config that is not given, registered or already imported.

    Modules named in the file are never imported here: the file may not be trusted.
    """
    config = _read_config(path)
    if config is None:
        return None
    import keras

    registered = keras.saving.get_custom_objects()
    for item in _walk(config):
        module = item.get("module") or ""
        class_name = item.get("class_name")
        names = {item.get("registered_name"), class_name} - {None}
        if not module or not isinstance(class_name, str) or module.split(".")[0] in _KERAS_PACKAGES:
            continue
        if names & set(objects) or names & set(registered) or hasattr(sys.modules.get(module), class_name):
            continue
        return class_name
    return None


def _read_config(path: str) -> Optional[dict]:
    try:
        if path.lower().endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as handle:
            text = handle.attrs.get("model_config")
        return json.loads(text.decode() if isinstance(text, bytes) else text) if text else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _walk(node):
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
