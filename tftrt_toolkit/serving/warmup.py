"""TF Serving warmup records: write ``assets.extra/tf_serving_warmup_requests``, read it back and check it.

TF Serving replays this file (a TFRecord of ``tensorflow.serving.PredictionLog``) every time
it loads a model version, before the version takes traffic, so the first real requests do
not pay for graph optimization, oneDNN primitive creation or (TF-TRT models without
prebuilt engines) the TensorRT engine build. A record that fails makes the whole load fail,
so every record written here is checked against the model's SignatureDef before the model
is committed, and ``read_warmup_file`` applies the same checks to any model's file.

    requests = plan_warmup_requests(signature, config, data="images/")
    write_warmup_file(staged_dir, signature, requests)      # -> a record for the metadata
    read_warmup_file(model_dir)                             # WarmupFile(records=2, ...) or None

Records are written with TensorFlow's own ``TFRecordWriter``; the ``PredictionLog`` and
``PredictRequest`` messages come from ``tensorflow-serving-api`` (the ``serving`` extra),
imported only here.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tftrt_toolkit.data.shapes import format_shape
from tftrt_toolkit.errors import ConfigError, ModelLoadError
from tftrt_toolkit.signature import ModelSignature

WARMUP_FILE_NAME = "tf_serving_warmup_requests"  # TF Serving's WarmupConsts::kRequestsFileName
WARMUP_RELATIVE_PATH = os.path.join("assets.extra", WARMUP_FILE_NAME)
# TF Serving refuses to load a model whose warmup file holds more records (WarmupConsts::kMaxNumRecords).
MAX_WARMUP_RECORDS = 1000
SERVING_EXTRA = "pip install 'tftrt_toolkit[serving]'"
# --warmup_data=none turns the default warmup off.
NO_WARMUP = "none"

# Where a request's values came from, as recorded in the metadata.
FROM_DATA = "data"
FROM_BUILD_SHAPE = "build shape"


def serving_api_available() -> bool:
    """Whether TF Serving's client protos (``tensorflow-serving-api``) can be imported here."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow_serving.apis.prediction_log_pb2") is not None
    except ImportError:  # no tensorflow_serving package at all
        return False


def _serving_protos():
    """(predict_pb2, prediction_log_pb2); ConfigError with the install command when the extra is missing."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as error:
        raise ConfigError(f"TF Serving warmup records need tensorflow-serving-api; run: {SERVING_EXTRA} "
                          "(or pass --warmup_data=none).") from error
    return predict_pb2, prediction_log_pb2


@dataclasses.dataclass(frozen=True, eq=False)
class WarmupRequest:
    """One warmup request: an array per signature input (batch dim first) and where the values came from."""

    inputs: Mapping[str, np.ndarray]
    origin: str

    @property
    def batch_size(self) -> int:
        return int(np.shape(next(iter(self.inputs.values())))[0])

    @property
    def shapes(self) -> Dict[str, List[int]]:
        return {name: list(np.shape(array)) for name, array in self.inputs.items()}

    def to_json(self) -> dict:
        return {"batch_size": self.batch_size, "shapes": self.shapes, "origin": self.origin}


# --------------------------------------------------------------------------- which requests

def warmup_wanted(config, *, has_calibration_data: bool, has_build_inputs: bool) -> Tuple[bool, bool]:
    """(write a warmup file?, was it asked for explicitly?) for a conversion ``config``.

    Explicit: ``warmup_data`` (other than "none") or ``warmup_batch_sizes`` given. By default a
    conversion that has calibration or build data writes one from that data.
    """
    if config.warmup_data == NO_WARMUP:
        return False, False
    explicit = bool(config.warmup_data) or bool(config.warmup_batch_sizes)
    return explicit or has_calibration_data or has_build_inputs, explicit


def plan_warmup_requests(signature: ModelSignature, config, *, data=None, preprocess: str = "auto",
                         input_shape=None, model_hint=None,
                         build_input_fn: Optional[Callable] = None) -> Tuple[List[WarmupRequest], str]:
    """The warmup requests a conversion writes, and a description of their data.

    ``data`` is the data spec to draw values from: ``config.warmup_data`` when given, else
    the conversion's calibration data (the caller passes it), else None. With no data spec
    the values are synthetic. One request per batch size, filled with the first samples of
    the data (a smaller data set is repeated): ``config.warmup_batch_sizes``, else the build
    inputs' batch sizes, else the signature's fixed batch size, else 1. Every build input (TF-TRT's ``build()`` shapes) that no data
    request already matches in every input's shape gets a request of its own, so TF Serving
    loads every engine the conversion prepared before the first real request.

    Raises DataError when the data cannot feed the signature, ConfigError when there would be
    more than TF Serving's 1000 records.
    """
    from tftrt_toolkit.data import open_source
    from tftrt_toolkit.data.samples import filled_batch

    build_requests = [WarmupRequest(dict(zip(signature.input_names, arrays)), FROM_BUILD_SHAPE)
                      for arrays in (build_input_fn() if build_input_fn is not None else ())]
    fixed = [info.shape[0] for info in signature.inputs if info.shape and info.shape[0] is not None]
    batch_sizes = (tuple(config.warmup_batch_sizes) or tuple(dict.fromkeys(r.batch_size for r in build_requests))
                   or tuple(fixed[:1]) or (1,))
    requests: List[WarmupRequest] = []
    if data is not None or not build_requests or config.warmup_batch_sizes:
        source = open_source(data if data is not None else "synthetic", signature, preprocess=preprocess,
                             input_shape=input_shape, model_hint=model_hint)
        description = source.description
        covered = set() if data is not None else {r.batch_size for r in build_requests}
        for batch_size in batch_sizes:
            if batch_size not in covered:  # synthetic values add nothing to a build input of the same batch size
                requests.append(WarmupRequest(filled_batch(source, batch_size), FROM_DATA))
    else:
        description = "the conversion's build inputs"
    for build in build_requests:
        if not any(request.shapes == build.shapes for request in requests):
            requests.append(build)
    if len(requests) > MAX_WARMUP_RECORDS:
        raise ConfigError(f"{len(requests)} warmup records is more than TF Serving reads ({MAX_WARMUP_RECORDS}); "
                          "give fewer --warmup_batch_sizes.")
    return requests, description


def check_warmup_possible(config) -> None:
    """Refuse, before any work, a conversion that asks for warmup records this install cannot write."""
    wanted, explicit = warmup_wanted(config, has_calibration_data=False, has_build_inputs=False)
    if wanted and explicit and not serving_api_available():
        _serving_protos()  # raises ConfigError with the install command


def write_conversion_warmup(saved_model_dir: str, signature: ModelSignature, config, *, calibration_data=None,
                            build_input_fn: Optional[Callable] = None, preprocess: str = "auto", input_shape=None,
                            model_hint=None, progress: Callable[[str], None] = lambda message: None) -> dict:
    """Write the warmup file a conversion asks for into its staged output; return the metadata record.

    ``calibration_data`` (the int8 calibration data spec) and ``build_input_fn`` are the data
    the conversion had; see ``warmup_wanted`` and ``plan_warmup_requests`` for what is written.
    A default (not explicitly asked for) warmup is skipped, and the record says why, when the
    serving extra is not installed. Raises what those functions raise.
    """
    wanted, explicit = warmup_wanted(config, has_calibration_data=calibration_data is not None,
                                     has_build_inputs=build_input_fn is not None)
    if not wanted:
        reason = ("turned off (--warmup_data=none)" if config.warmup_data == NO_WARMUP
                  else "no warmup data: pass --warmup_data=SPEC or --warmup_batch_sizes")
        return {"records": 0, "reason": reason}
    if not explicit and not serving_api_available():
        progress(f"no TF Serving warmup records: tensorflow-serving-api is not installed ({SERVING_EXTRA})")
        return {"records": 0, "reason": f"tensorflow-serving-api is not installed ({SERVING_EXTRA})"}
    data = config.warmup_data or calibration_data
    requests, description = plan_warmup_requests(signature, config, data=data, preprocess=preprocess,
                                                 input_shape=input_shape, model_hint=model_hint,
                                                 build_input_fn=build_input_fn)
    record = write_warmup_file(saved_model_dir, signature, requests)
    record["data"] = description
    sizes = ", ".join(str(r.batch_size) for r in requests)
    progress(f"wrote {record['records']} TF Serving warmup record(s) (batch sizes {sizes}) from {description}")
    return record


# --------------------------------------------------------------------------- writing

def _tf_dtype(dtype_name: str):
    import tensorflow as tf

    return tf.as_dtype(dtype_name)


def write_warmup_file(saved_model_dir: str, signature: ModelSignature, requests: Sequence[WarmupRequest]) -> dict:
    """Write ``requests`` as TF Serving warmup records into ``saved_model_dir``; return what was written.

    Each record is ``PredictionLog(predict_log=PredictLog(request=PredictRequest(...)))`` with
    ``model_spec.signature_name`` = the signature's key and one TensorProto per signature
    input, under the input's key and of its dtype. ``model_spec.name`` stays empty: TF Serving
    runs warmup on the version it is loading, whatever the model is called there. The file is
    read back and checked against the SavedModel's SignatureDef before returning.

    Raises ConfigError (the serving extra is missing), ModelLoadError (a record does not match
    the signature: a bug here, since requests are built from it), and OSError/TF errors from
    writing (the caller's staged output turns those into "nothing was written").
    """
    import tensorflow as tf

    predict_pb2, prediction_log_pb2 = _serving_protos()
    path = os.path.join(saved_model_dir, WARMUP_RELATIVE_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            predict = predict_pb2.PredictRequest()
            predict.model_spec.signature_name = signature.key
            for info in signature.inputs:
                dtype = _tf_dtype(info.dtype)
                predict.inputs[info.name].CopyFrom(tf.make_tensor_proto(np.asarray(request.inputs[info.name]), dtype=dtype))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=predict))
            writer.write(log.SerializeToString())
    written = read_warmup_file(saved_model_dir)
    return {
        "file": WARMUP_RELATIVE_PATH,
        "records": written.records,
        "signature": signature.key,
        "requests": [request.to_json() for request in requests],
    }


# --------------------------------------------------------------------------- reading and checking

@dataclasses.dataclass(frozen=True)
class WarmupFile:
    """A model's warmup file as read back: how many records, and what they ask for."""

    path: str
    records: int
    checked: bool  # False when the serving extra is missing: records were counted, not parsed
    requests: Tuple[dict, ...] = ()  # per predict record: signature, batch_size, shapes

    def describe(self) -> str:
        """One line for ``tftrt inspect``."""
        if not self.checked:
            return (f"TF Serving warmup: {self.records} record(s) in {WARMUP_RELATIVE_PATH} "
                    f"(not checked against the signature: {SERVING_EXTRA})")
        predict = [r for r in self.requests if r.get("signature") is not None]
        sizes = sorted({r["batch_size"] for r in predict})
        signatures = sorted({r["signature"] for r in predict})
        details = (f"; predict requests for {', '.join(repr(s) for s in signatures)} at batch sizes "
                   f"{', '.join(map(str, sizes))}") if predict else ""
        return f"TF Serving warmup: {self.records} record(s) in {WARMUP_RELATIVE_PATH}, all match the signatures{details}"

    def to_json(self) -> dict:
        return {"file": WARMUP_RELATIVE_PATH, "records": self.records, "checked": self.checked,
                "requests": list(self.requests)}


def _bad(path: str, detail: str) -> ModelLoadError:
    return ModelLoadError(
        f"warmup file {path} {detail}; TF Serving would refuse to load this version: rewrite it with "
        "`tftrt convert --warmup_data=...` or delete it.")


def _record_bytes(path: str) -> List[bytes]:
    import tensorflow as tf

    from tftrt_toolkit.errors import first_line

    try:
        records = [record.numpy() for record in tf.data.TFRecordDataset(path)]
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError) as error:
        raise _bad(path, f"is not a readable TFRecord file ({first_line(error)})") from None
    # TF's reader takes a partial header at the end for the end of the file, so a truncated
    # file reads as fewer records without an error: every record is framed by 16 bytes
    # (length, its CRC, the data's CRC), so the sizes must add up to the file's.
    framed = sum(len(record) + 16 for record in records)
    size = os.path.getsize(path)
    if framed != size:
        raise _bad(path, f"is not a readable TFRecord file ({size - framed} byte(s) after the last complete record "
                         f"{len(records)}: truncated or not a TFRecord)")
    return records


def _signature_defs(saved_model_dir: str) -> dict:
    """{key: SignatureDef proto} of the serving meta graph, read from saved_model.pb."""
    from tensorflow.python.saved_model import loader_impl

    saved_model = loader_impl.parse_saved_model(saved_model_dir)
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags or len(saved_model.meta_graphs) == 1:
            return dict(meta_graph.signature_def)
    return {}


def _check_predict_request(path: str, index: int, request, signature_defs: dict) -> dict:
    """The request's signature, batch size and shapes; ModelLoadError when it does not fit the SignatureDef."""
    import tensorflow as tf

    where = f"record {index + 1}"
    # TF Serving reads an empty signature_name as serving_default.
    key = request.model_spec.signature_name or "serving_default"
    if key not in signature_defs:
        available = ", ".join(sorted(k for k in signature_defs if not k.startswith("__"))) or "none"
        raise _bad(path, f"{where} asks for signature {key!r}, which the model does not have (it has: {available})")
    signature = signature_defs[key]
    wanted, given = set(signature.inputs), set(request.inputs)
    if wanted != given:
        missing, extra = sorted(wanted - given), sorted(given - wanted)
        parts = ([f"lacks input(s) {', '.join(missing)}"] if missing else []) + (
            [f"has unknown input(s) {', '.join(extra)}"] if extra else [])
        raise _bad(path, f"{where} {' and '.join(parts)} for signature {key!r}")
    shapes, batch_sizes = {}, set()
    for name in sorted(wanted):
        tensor, info = request.inputs[name], signature.inputs[name]
        if tensor.dtype != info.dtype:
            raise _bad(path, f"{where} gives input {name!r} as {tf.as_dtype(tensor.dtype).name}, but signature {key!r} "
                             f"takes {tf.as_dtype(info.dtype).name}")
        dims = [d.size for d in tensor.tensor_shape.dim]
        if not info.tensor_shape.unknown_rank:
            expected = [d.size for d in info.tensor_shape.dim]
            if len(dims) != len(expected) or any(e >= 0 and e != d for e, d in zip(expected, dims)):
                shown = format_shape([None if e < 0 else e for e in expected])
                raise _bad(path, f"{where} gives input {name!r} the shape {format_shape(dims)}, but signature "
                                 f"{key!r} takes {shown}")
        try:
            tf.make_ndarray(tensor)  # the values must fill the shape: TF Serving decodes them the same way
        except (TypeError, ValueError) as error:
            raise _bad(path, f"{where} has input {name!r} whose values do not fill its shape ({error})") from None
        shapes[name] = dims
        if dims:
            batch_sizes.add(dims[0])
    if len(batch_sizes) > 1:
        raise _bad(path, f"{where} gives its inputs different batch sizes ({sorted(batch_sizes)})")
    return {"signature": key, "batch_size": batch_sizes.pop() if batch_sizes else None, "shapes": shapes}


def read_warmup_file(saved_model_dir: str) -> Optional[WarmupFile]:
    """The model's TF Serving warmup file, checked record by record; None when it has none.

    Every record must parse as a ``PredictionLog``; predict requests must name one of the
    model's signatures and give exactly its inputs, with its dtypes and shapes that fit it.
    Without the serving extra the records are only counted (framing and checksums).
    Raises ModelLoadError, one line naming the record and what is wrong, for a corrupt or
    mismatched file, or one with more records than TF Serving reads.
    """
    from google.protobuf.message import DecodeError

    path = os.path.join(saved_model_dir, WARMUP_RELATIVE_PATH)
    if not os.path.isfile(path):
        return None
    records = _record_bytes(path)
    if len(records) > MAX_WARMUP_RECORDS:
        raise _bad(path, f"holds {len(records)} records, more than the {MAX_WARMUP_RECORDS} TF Serving reads")
    if not serving_api_available():
        return WarmupFile(path, len(records), checked=False)
    _, prediction_log_pb2 = _serving_protos()
    signature_defs = _signature_defs(saved_model_dir)
    requests = []
    for index, data in enumerate(records):
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(data)
        except DecodeError:
            raise _bad(path, f"record {index + 1} is not a tensorflow.serving.PredictionLog") from None
        kind = log.WhichOneof("log_type")
        if kind is None:
            raise _bad(path, f"record {index + 1} is an empty PredictionLog (no request in it)")
        if kind != "predict_log":
            requests.append({"kind": kind})  # classify/regress/multi-inference: TF Serving replays them; not checked here
            continue
        requests.append(_check_predict_request(path, index, log.predict_log.request, signature_defs))
    return WarmupFile(path, len(records), checked=True, requests=tuple(requests))


def replay_warmup_file(saved_model_dir: str) -> int:
    """Run every predict record through ``tf.saved_model.load(dir).signatures[name]``, as TF Serving would.

    Returns the number of requests run. Raises ModelLoadError when the file does not check out
    (see ``read_warmup_file``) and lets TensorFlow's error through when the model rejects a request.
    """
    import tensorflow as tf

    checked = read_warmup_file(saved_model_dir)
    if checked is None:
        return 0
    _, prediction_log_pb2 = _serving_protos()
    loaded = tf.saved_model.load(saved_model_dir)  # keep a reference while its signatures run
    count = 0
    for data in _record_bytes(checked.path):
        log = prediction_log_pb2.PredictionLog.FromString(data)
        if log.WhichOneof("log_type") != "predict_log":
            continue
        request = log.predict_log.request
        function = loaded.signatures[request.model_spec.signature_name or "serving_default"]
        function(**{name: tf.constant(tf.make_ndarray(tensor)) for name, tensor in request.inputs.items()})
        count += 1
    return count
