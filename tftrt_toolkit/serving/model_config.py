"""TF Serving's model config and batching parameters for a converted model, from measurements when there are some.

    config = serving_config("/models/lite0", "lite0", benchmark_report="bench/benchmark.json")
    config.models_config_text()          # a ModelServerConfig text proto (--model_config_file)
    config.batching_parameters_text()    # a BatchingParameters text proto (--batching_parameters_file)
    config.docker_commands("/srv/config")  # how to start tensorflow/serving with both (not run here)

Batching values and where they come from (each recorded in ``BatchingParameters.reasons``):

- ``max_batch_size``: with a benchmark report, the largest measured batch size whose
  throughput (samples/s) beats every smaller one by at least ``MIN_THROUGHPUT_GAIN`` (5%,
  above run-to-run noise): past it, batching more only adds latency. With a tune report,
  tune's batch size when it is above 1. Otherwise: a TensorRT model's largest build batch
  size (its engines exist for those), else ``DEFAULT_MAX_BATCH_SIZE`` (8).
- ``allowed_batch_sizes``: the measured (or built) batch sizes up to ``max_batch_size``, else
  powers of two up to it. TF Serving pads a batch up to the next allowed size, so the model
  only ever sees these shapes: oneDNN primitives and TF-TRT engines are made once per shape.
- ``batch_timeout_micros``: the measured p50 latency of the smallest batch size, so a lone
  request waits at most about one run for company (its latency at most doubles at low load);
  else ``DEFAULT_BATCH_TIMEOUT_MICROS`` (1 ms, the TF Serving batching guide's example).
- ``num_batch_threads``: with a concurrency measurement (``tftrt benchmark --concurrency``),
  the smallest number of concurrent requests within 5% of the best throughput; else the
  measured machine's CPU count (the guide's advice for CPU serving); else this machine's.
- ``max_enqueued_batches``: ``num_batch_threads`` (the guide's advice for online serving with
  bounded latency); raise it for bulk jobs.

The TF Serving protos are not needed to write these files (they are plain text protos); the
tests parse them with ``model_server_config_pb2`` and TF Serving's ``BatchingParameters``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from tftrt_toolkit import benchmark_schema
from tftrt_toolkit.artifacts import serving_threads
from tftrt_toolkit.errors import ConfigError

MODELS_CONFIG_FILE = "models.config"
BATCHING_PARAMETERS_FILE = "batching_parameters.txt"

DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_BATCH_TIMEOUT_MICROS = 1000
# A larger batch must beat every smaller one by this share of throughput to count as an improvement.
MIN_THROUGHPUT_GAIN = 0.05
# The TF Serving release matching the pinned TensorFlow (tensorflow-serving-api 2.17.1).
SERVING_IMAGE = "tensorflow/serving:2.17.1"
# TF Serving's GPU image: NVIDIA's CUDA base with the TensorRT libraries TF-TRT engines need.
SERVING_GPU_IMAGE = "tensorflow/serving:2.17.1-gpu"
CONFIG_MOUNT = "/config"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's ``BatchingParameters`` (the fields we set) and where each value came from."""

    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int
    allowed_batch_sizes: Tuple[int, ...]
    reasons: Dict[str, str]

    def to_text(self) -> str:
        """The text proto TF Serving reads with ``--batching_parameters_file`` (wrapper fields as ``{ value: N }``)."""
        lines = ["# TF Serving BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto),",
                 "# written by tftrt serving-config. Each value says where it came from."]
        for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
            lines.append(f"# {self.reasons[name]}")
            lines.append(f"{name} {{ value: {getattr(self, name)} }}")
        lines.append(f"# {self.reasons['allowed_batch_sizes']}")
        lines.extend(f"allowed_batch_sizes: {size}" for size in self.allowed_batch_sizes)
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"allowed_batch_sizes": list(self.allowed_batch_sizes)}


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """What TF Serving needs to serve one model: its name, base path, batching and thread settings."""

    name: str
    base_path: str
    batching: BatchingParameters
    intra_op_threads: Optional[int]  # TF Serving's --tensorflow_intra_op_parallelism (None: its default)
    inter_op_threads: Optional[int]
    backend: Optional[str]  # of the newest version, from its toolkit metadata (None when not ours or not local)
    notes: Tuple[str, ...]
    requires_onednn: bool = False  # the newest version holds ops only TF's oneDNN kernels implement
    threads_reason: Optional[str] = None  # why these TF threads: tune's measured serving choice

    def models_config_text(self) -> str:
        """A ``ModelServerConfig`` text proto serving the newest version under ``base_path``."""
        return (
            "# TF Serving ModelServerConfig (--model_config_file), written by tftrt serving-config.\n"
            "model_config_list {\n"
            "  config {\n"
            f"    name: {_quoted(self.name)}\n"
            f"    base_path: {_quoted(self.base_path)}\n"
            '    model_platform: "tensorflow"\n'
            "    # Serve the newest version directory; a new one (tftrt convert --version=auto) replaces it without a restart.\n"
            "    model_version_policy {\n"
            "      latest {\n"
            "        num_versions: 1\n"
            "      }\n"
            "    }\n"
            "  }\n"
            "}\n"
        )

    def batching_parameters_text(self) -> str:
        text = self.batching.to_text()
        if self.threads_reason:
            # TF Serving takes threads as flags, not in this file: say which, and why, where the batching is.
            flags = " ".join(self.server_flags(CONFIG_MOUNT)[3:]) or "TF Serving's default threads"
            text += f"# server flags: {flags}\n# why: {self.threads_reason}\n"
        return text

    def server_flags(self, config_dir: str) -> List[str]:
        flags = [f"--model_config_file={config_dir}/{MODELS_CONFIG_FILE}", "--enable_batching=true",
                 f"--batching_parameters_file={config_dir}/{BATCHING_PARAMETERS_FILE}"]
        if self.intra_op_threads:
            flags.append(f"--tensorflow_intra_op_parallelism={self.intra_op_threads}")
        if self.inter_op_threads:
            flags.append(f"--tensorflow_inter_op_parallelism={self.inter_op_threads}")
        return flags

    def docker_commands(self, config_dir: str) -> Dict[str, str]:
        """{"cpu": ..., "gpu": ...}: ``docker run`` lines for TF Serving's CPU image and its GPU image (TensorRT models).

        The model's base path is mounted at the same path inside the container, so ``models.config``
        is valid inside and outside it; ``config_dir`` (holding both files) is mounted at /config.
        """
        config_dir = os.path.abspath(config_dir)
        mounts = f"-v {self.base_path}:{self.base_path}:ro -v {config_dir}:{CONFIG_MOUNT}:ro"
        if self.requires_onednn:
            # TF reads the switch once at start-up; without it TF 2.17 enables oneDNN only on AVX512-VNNI/AMX CPUs.
            mounts += " -e TF_ENABLE_ONEDNN_OPTS=1"
        flags = " ".join(self.server_flags(CONFIG_MOUNT))
        return {
            "cpu": f"docker run --rm -p 8500:8500 -p 8501:8501 {mounts} {SERVING_IMAGE} {flags}",
            "gpu": f"docker run --rm --gpus all -p 8500:8500 -p 8501:8501 {mounts} {SERVING_GPU_IMAGE} {flags}",
        }

    def to_json(self) -> dict:
        return {"name": self.name, "base_path": self.base_path, "batching": self.batching.to_json(),
                "intra_op_threads": self.intra_op_threads, "inter_op_threads": self.inter_op_threads,
                "backend": self.backend, "requires_onednn": self.requires_onednn, "notes": list(self.notes),
                "threads_reason": self.threads_reason}


def _quoted(text: str) -> str:
    """A text-proto string literal (C escapes)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# --------------------------------------------------------------------------- reading reports

def read_report(path: str, kind: str) -> dict:
    """A benchmark.json / throughput.json / tune.json as a dict; ConfigError when it is missing or is not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"--{kind}={path} does not exist; pass the JSON a tftrt {kind.split('_')[0]} run wrote.") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"--{kind}={path} is not readable JSON ({error}); pass the JSON a tftrt run wrote.") from None
    if not isinstance(report, dict):
        raise ConfigError(f"--{kind}={path} is not a tftrt report (a JSON object); pass benchmark.json or tune.json.")
    return report


def _benchmark_points(report: dict, path: str, metadata: Optional[dict]) -> Tuple[Dict[int, dict], Optional[str]]:
    """({batch size: {"throughput", "p50_ms"}}, note) for the served model in a benchmark.json (``benchmark_schema``).

    ``tftrt benchmark`` measured one model; ``run`` and ``tune`` several: the candidate tune chose
    (the served model's ``chosen_by``), else the one whose backend and precision are the served
    model's (``metadata``), or the only one.
    """
    document = benchmark_schema.normalize(report, os.path.basename(path))
    names = benchmark_schema.model_names(document)
    if not names:
        raise ConfigError(f"{path} has no measurement of an optimized model; pass the benchmark.json of the model you serve.")
    name, note = names[0], None
    if len(names) > 1:
        served = ((metadata or {}).get("backend"), (metadata or {}).get("precision"))
        chosen = ((metadata or {}).get("chosen_by") or {}).get("candidate")  # tune's pick, by name
        matching = [chosen] if chosen in names else [
            n for n in names if ((document["models"].get(n) or {}).get("backend"),
                                 (document["models"].get(n) or {}).get("precision")) == served]
        if not matching:
            known = "" if metadata else " (the served model's metadata is not readable here)"
            raise ConfigError(f"{path} measured {', '.join(names)} and none is the served model{known} "
                              f"(backend {served[0]}, precision {served[1]}); pass the benchmark of the model you serve.")
        name = matching[0]
        note = f"{os.path.basename(path)} measured {', '.join(names)}: its {name} figures size the batching"
    return benchmark_schema.points(document, name), note


def _largest_improving_batch_size(points: Dict[int, dict]) -> int:
    sizes = sorted(points)
    best = sizes[0]
    for size in sizes[1:]:
        if points[size]["throughput"] >= points[best]["throughput"] * (1 + MIN_THROUGHPUT_GAIN):
            best = size
    return best


def _concurrency_threads(throughput: dict, batch_size: int) -> Optional[Tuple[int, str]]:
    """(num_batch_threads, reason) from a throughput.json: the smallest concurrency within 5% of the best."""
    rows = [r for r in throughput.get("results", []) if r.get("role", "optimized") == "optimized"]
    if not rows:
        return None
    sizes = sorted({int(r["batch_size"]) for r in rows})
    size = max([s for s in sizes if s <= batch_size] or sizes[:1])
    at_size = {int(r["concurrency"]): float(r["samples_per_second"]) for r in rows if int(r["batch_size"]) == size}
    best = max(at_size.values())
    threads = min(c for c, rate in at_size.items() if rate >= best * (1 - MIN_THROUGHPUT_GAIN))
    measured = ", ".join(f"{c}: {rate:.1f}/s" for c, rate in sorted(at_size.items()))
    return threads, (f"num_batch_threads: the fewest concurrent requests within {MIN_THROUGHPUT_GAIN:.0%} of the best "
                     f"throughput at batch {size} (samples/s by concurrency {measured})")


def _threads_in_force(settings: dict) -> Tuple[Optional[int], Optional[int]]:
    in_force = (settings.get("threads") or {}).get("in_force") or {}
    return in_force.get("intra_op_threads") or None, in_force.get("inter_op_threads") or None


# --------------------------------------------------------------------------- the config

def _newest_version_metadata(base_path: str) -> Tuple[Optional[dict], List[str]]:
    """(toolkit metadata of the newest version, notes); ConfigError when a local base path holds no versions."""
    from tftrt_toolkit.artifacts import read_metadata

    if not os.path.isdir(base_path):
        return None, [f"{base_path} is not a directory here: written as given (a path on the serving machine?)"]
    versions = sorted((int(name) for name in os.listdir(base_path)
                       if name.isdigit() and os.path.isfile(os.path.join(base_path, name, "saved_model.pb"))))
    if not versions:
        raise ConfigError(f"--model_base_path={base_path} holds no version directory (BASE/1/saved_model.pb); TF Serving "
                          "serves BASE/N: convert with --output=BASE --version=auto.")
    return read_metadata(os.path.join(base_path, str(versions[-1]))), []


def serving_config(model_base_path: str, name: str, *, benchmark_report: Optional[str] = None,
                   tune_report: Optional[str] = None, cpu_count: Optional[int] = None) -> ServingConfig:
    """The TF Serving config for the model versions under ``model_base_path``, served as ``name``.

    ``benchmark_report``: a benchmark.json (``tftrt benchmark --output``; a throughput.json
    beside it, from ``--concurrency``, is read too) or a throughput.json. ``tune_report``: a
    tune.json (its chosen candidate's threads and latency). Without reports the documented
    defaults apply (see the module docstring). ``cpu_count`` overrides this machine's.

    Raises ConfigError for an invalid name, a local base path without versions, or a report
    that is missing or not one tftrt writes.
    """
    if not name or not _MODEL_NAME.match(name):
        raise ConfigError(f"--name={name!r} is not a usable model name; use letters, digits, '_', '.' and '-' "
                          "(it becomes part of the URL /v1/models/NAME).")
    if not model_base_path:
        raise ConfigError("--model_base_path is required: the directory holding the model's version directories.")
    base_path = os.path.abspath(os.path.expanduser(model_base_path)) if os.path.exists(model_base_path) else model_base_path
    metadata, notes = _newest_version_metadata(base_path)
    backend = (metadata or {}).get("backend")
    reasons: Dict[str, str] = {}

    points: Dict[int, dict] = {}
    throughput: Optional[dict] = None
    intra = inter = None
    measured_cpu_count = None
    source = None
    if benchmark_report:
        report = read_report(benchmark_report, "benchmark_report")
        if "concurrency" in (report.get("settings") or {}):
            throughput = report  # a throughput.json given directly
            points = {}
        else:
            points, picked = _benchmark_points(report, benchmark_report, metadata)
            if picked:
                notes.append(picked)
            sibling = os.path.join(os.path.dirname(os.path.abspath(benchmark_report)), "throughput.json")
            if os.path.isfile(sibling):
                throughput = read_report(sibling, "benchmark_report")
        settings = report.get("settings") or {}
        intra, inter = _threads_in_force(settings)
        measured_cpu_count = settings.get("cpu_count")
        source = os.path.basename(benchmark_report)
    tune_row = None
    # tune's serving choice (threads, requests in flight, batch): from tune.json, else the model's own metadata.
    serving = serving_threads(metadata)
    if tune_report:
        tune = read_report(tune_report, "tune_report")
        serving = tune.get("serving") if isinstance(tune.get("serving"), dict) else serving
        chosen = tune.get("chosen")
        tune_row = next((row for row in tune.get("table", []) if row.get("candidate") == chosen), None)
        if tune_row is None:
            raise ConfigError(f"{tune_report} has no chosen candidate (nothing met tune's budget); serve the original "
                              "or re-run tune with a wider budget.")
        # tune's threads are the ones its chosen model was measured with.
        intra = tune_row.get("intra_op_threads") or intra
        inter = tune_row.get("inter_op_threads") or inter
        if not points and tune_row.get("p50_ms") is not None:
            points = {int(tune["batch_size"]): {"throughput": tune_row.get("throughput"), "p50_ms": float(tune_row["p50_ms"])}}
            source = os.path.basename(tune_report)

    threads_reason = None
    in_flight = None
    if serving:
        intra = serving.get("intra_op_threads") or None
        inter = serving.get("inter_op_threads") or None
        threads_reason = serving.get("reason")
        if serving.get("objective") == "throughput" and serving.get("concurrency"):
            in_flight = int(serving["concurrency"]), int(serving.get("batch_size") or 1)

    build_sizes = sorted({int(shape[0]) for shape in ((metadata or {}).get("config") or {}).get("build_shapes") or []})
    if len(points) > 1:
        max_batch_size = _largest_improving_batch_size(points)
        measured = ", ".join(f"{b}: {p['throughput']:.1f}/s" for b, p in sorted(points.items()))
        reasons["max_batch_size"] = (f"max_batch_size: the largest batch size whose throughput beats every smaller one by "
                                     f">= {MIN_THROUGHPUT_GAIN:.0%} in {source} (samples/s by batch size {measured})")
        allowed = tuple(b for b in sorted(points) if b <= max_batch_size)
        reasons["allowed_batch_sizes"] = f"allowed_batch_sizes: the batch sizes measured in {source}, up to max_batch_size"
    elif in_flight and len(points) <= 1:
        max_batch_size, allowed = in_flight[1], (in_flight[1],)
        reasons["max_batch_size"] = (f"max_batch_size: the batch size tune measured serving at, {in_flight[0]} requests "
                                     "in flight (the reason is at the end of this file)")
        reasons["allowed_batch_sizes"] = "allowed_batch_sizes: tune's batch size only"
    elif len(points) == 1 and next(iter(points)) > 1:
        max_batch_size = next(iter(points))
        reasons["max_batch_size"] = f"max_batch_size: the batch size measured in {source}"
        allowed = _powers_of_two_up_to(max_batch_size)
        reasons["allowed_batch_sizes"] = "allowed_batch_sizes: powers of two up to max_batch_size (one batch size was measured)"
    elif backend == "tensorrt" and build_sizes:
        max_batch_size, allowed = build_sizes[-1], tuple(build_sizes)
        reasons["max_batch_size"] = "max_batch_size: the model's largest TensorRT build batch size (its engines exist for those)"
        reasons["allowed_batch_sizes"] = "allowed_batch_sizes: the model's TensorRT build batch sizes"
    else:
        max_batch_size, allowed = DEFAULT_MAX_BATCH_SIZE, _powers_of_two_up_to(DEFAULT_MAX_BATCH_SIZE)
        why = (f"{source} measured batch size 1 only; measure several, e.g. tftrt benchmark --batch_sizes=1,8,32"
               if points else "no measurement given; pass --benchmark_report to size it from this model")
        reasons["max_batch_size"] = f"max_batch_size: default {DEFAULT_MAX_BATCH_SIZE} ({why})"
        reasons["allowed_batch_sizes"] = "allowed_batch_sizes: default, powers of two up to max_batch_size"

    if in_flight and max_batch_size == 1:
        timeout = 0
        reasons["batch_timeout_micros"] = "batch_timeout_micros: 0, a batch of one is full at once (no request waits)"
    elif points:
        smallest = min(points)
        timeout = max(1, int(round(points[smallest]["p50_ms"] * 1000)))
        reasons["batch_timeout_micros"] = (f"batch_timeout_micros: the measured p50 latency at batch {smallest} in {source} "
                                           "(a lone request waits at most about one run for company)")
    else:
        timeout = DEFAULT_BATCH_TIMEOUT_MICROS
        reasons["batch_timeout_micros"] = "batch_timeout_micros: default 1 ms (TF Serving batching guide's example)"

    concurrency = _concurrency_threads(throughput, max_batch_size) if throughput else None
    if concurrency:
        num_batch_threads, reasons["num_batch_threads"] = concurrency
    elif in_flight:
        num_batch_threads = in_flight[0]
        reasons["num_batch_threads"] = (f"num_batch_threads: the {num_batch_threads} requests in flight tune measured the "
                                        "chosen threading with (one per core)")
    elif measured_cpu_count:
        num_batch_threads = int(measured_cpu_count)
        reasons["num_batch_threads"] = f"num_batch_threads: the measured machine's {num_batch_threads} CPUs (TF Serving's advice for CPUs)"
    else:
        num_batch_threads = int(cpu_count or os.cpu_count() or 1)
        reasons["num_batch_threads"] = f"num_batch_threads: this machine's {num_batch_threads} CPUs (TF Serving's advice for CPUs)"
    reasons["max_enqueued_batches"] = ("max_enqueued_batches: num_batch_threads (TF Serving's advice for online serving "
                                       "with bounded latency; raise it for bulk jobs)")

    warmed = sorted({r["batch_size"] for r in ((metadata or {}).get("serving_warmup") or {}).get("requests", [])})
    missing = [b for b in allowed if b not in warmed]
    if metadata is not None and missing:
        notes.append(f"the model's warmup records cover batch sizes {warmed or 'none'}; the first requests at "
                     f"{', '.join(map(str, missing))} will be slow: convert with "
                     f"--warmup_batch_sizes={','.join(map(str, allowed))}")
    batching = BatchingParameters(max_batch_size=max_batch_size, batch_timeout_micros=timeout,
                                  num_batch_threads=num_batch_threads, max_enqueued_batches=num_batch_threads,
                                  allowed_batch_sizes=allowed, reasons=reasons)
    requires_onednn = bool(((metadata or {}).get("runtime") or {}).get("requires_onednn"))
    if requires_onednn:
        notes.append("the model needs TF's oneDNN ops (" + str(metadata["runtime"].get("why", "oneDNN-only ops"))
                     + "): the docker lines set TF_ENABLE_ONEDNN_OPTS=1")
    return ServingConfig(name=name, base_path=base_path, batching=batching, intra_op_threads=intra,
                         inter_op_threads=inter, backend=backend, notes=tuple(notes), requires_onednn=requires_onednn,
                         threads_reason=threads_reason)


def _powers_of_two_up_to(limit: int) -> Tuple[int, ...]:
    sizes = []
    size = 1
    while size < limit:
        sizes.append(size)
        size *= 2
    return tuple(sizes) + (limit,)


def output_paths(output_dir: str) -> Sequence[str]:
    """The two files ``serving-config`` writes into ``output_dir``."""
    return [os.path.join(output_dir, MODELS_CONFIG_FILE), os.path.join(output_dir, BATCHING_PARAMETERS_FILE)]
