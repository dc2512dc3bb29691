"""Benchmark: latency percentiles and throughput per batch size, optionally against a baseline.

    report = benchmark("out/bf16", baseline="saved_models/efficientnet_lite0", batch_sizes=(1, 8))
    report.speedups          # [{"batch_size": 1, "p50_speedup": 1.9, "throughput_speedup": 1.9}, ...]
    report.table_lines()     # the compact table the CLI prints

Timing honesty (what is and is not on the clock):
- inputs are decoded, preprocessed and turned into tensors *before* the clock starts;
- each timed run is one call of the signature function plus ``.numpy()`` on every output,
  so the work is finished and the results are in host memory when the clock stops;
- the first call at each batch size (graph optimization / engine build) is timed on its
  own as ``first_call_ms``; warm-up runs after it are excluded;
- with a baseline both models are loaded in the same process and their runs INTERLEAVED
  (baseline, optimized, baseline, ...) at each batch size, so drifting machine load
  (other processes, CPU frequency) hits both alike; both get the same number of runs;
- the number of timed runs, threads, batch sizes, TF version and CPU go into the report.
The loop itself is ``runtime.timing`` (``time_calls``/``time_rounds``), the one tune's worker
and the benchmark scripts use too.

Fair baseline: tftrt turns TF's oneDNN ops on in its own processes, while plain TF leaves
them off by default on CPUs without AVX512-VNNI/BF16, AVX-VNNI or AMX. There the baseline
is timed twice: in this process (same setting as the optimized model, the like-for-like
ratio) and in a subprocess at TF's default setting (``baseline_tf_default``: plain TF as
its users run it), interleaved round by round; speed-ups against both are reported and
``settings["onednn"]`` says which setting each row ran with.

Peak RSS is the process's high-water mark (``getrusage``) after each measurement: with a
baseline both models live in the process, so it is an upper bound for each.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tftrt_toolkit.data import open_source
from tftrt_toolkit.data.samples import filled_batch
from tftrt_toolkit.data.preprocess import hint_of_pair
from tftrt_toolkit.data.sources import DataSpec
from tftrt_toolkit import benchmark_schema
from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.progress import progress_bar
from tftrt_toolkit.report import results as rendered
from tftrt_toolkit.runtime.session import ModelLike, ModelRunner, Threads, configure_threads, open_runner
from tftrt_toolkit.runtime.timing import MIN_ROUNDS, latency_stats, prepared_call, time_calls, time_rounds
from tftrt_toolkit.runtime.validate import check_same_signature

DEFAULT_BATCH_SIZES = (1, 8, 32)
DEFAULT_WARMUP = 5
# Without --iterations or --duration, time about this many seconds per model and batch size.
DEFAULT_DURATION_S = 5.0
# Percentiles need a few runs to mean anything, whatever the duration.
MIN_RUNS = MIN_ROUNDS

LATENCY_STATS = ("min", "mean", "p50", "p90", "p99", "max")

CSV_COLUMNS = (
    "role", "name", "model", "batch_size", "runs", "first_call_ms",
    *(f"latency_{stat}_ms" for stat in LATENCY_STATS),
    "throughput", "peak_rss_mb", "p50_speedup", "throughput_speedup",
)


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident memory in MB (None where getrusage is unavailable)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / 1024.0 / (1024.0 if platform.system() == "Darwin" else 1.0)


@dataclasses.dataclass
class Measurement:
    """One model at one batch size: timed runs and what they say."""

    role: str
    model: str
    batch_size: int
    runs: int
    first_call_ms: Optional[float]  # None where another process made the first call
    latency_ms: Dict[str, float]
    throughput: float  # samples per second over the timed runs
    peak_rss_mb: Optional[float]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BenchmarkReport:
    """Settings, per-model facts, one Measurement per model x batch size, and baseline speed-ups."""

    settings: dict
    models: Dict[str, dict]  # role -> ModelRunner.describe()
    results: List[Measurement]
    speedups: List[dict]  # per batch size: p50_speedup (baseline p50 / optimized p50), throughput_speedup

    def result(self, role: str, batch_size: int) -> Measurement:
        for measurement in self.results:
            if measurement.role == role and measurement.batch_size == batch_size:
                return measurement
        raise KeyError((role, batch_size))

    def speedup(self, batch_size: int) -> Optional[dict]:
        return next((s for s in self.speedups if s["batch_size"] == batch_size), None)

    @property
    def has_baseline(self) -> bool:
        return "baseline" in self.models

    def to_json(self) -> dict:
        """This report as benchmark.json (``benchmark_schema``; the model is named "optimized")."""
        return benchmark_document({benchmark_schema.SINGLE_MODEL_NAME: self})

    @property
    def csv_columns(self) -> Sequence[str]:
        return CSV_COLUMNS

    def csv_rows(self) -> List[dict]:
        """One row per model x batch size (columns ``CSV_COLUMNS``); speed-ups on the optimized rows."""
        rows = []
        for m in self.results:
            speedup = self.speedup(m.batch_size) if m.role == "optimized" else None
            rows.append({
                "role": m.role, "name": m.role if m.role in benchmark_schema.BASELINE_ROLES else "optimized",
                "model": m.model, "batch_size": m.batch_size, "runs": m.runs,
                "first_call_ms": None if m.first_call_ms is None else round(m.first_call_ms, 3),
                **{f"latency_{stat}_ms": round(m.latency_ms[stat], 3) for stat in LATENCY_STATS},
                "throughput": round(m.throughput, 2),
                "peak_rss_mb": None if m.peak_rss_mb is None else round(m.peak_rss_mb, 1),
                "p50_speedup": None if speedup is None else round(speedup["p50_speedup"], 3),
                "throughput_speedup": None if speedup is None else round(speedup["throughput_speedup"], 3),
            })
        return rows

    # ------------------------------------------------------------------ rendering (report.results)

    def table_lines(self) -> List[str]:
        """A compact fixed-width table: per batch size, p50 latency and throughput (and speed-ups)."""
        return rendered.benchmark_lines(self)

    def to_markdown(self) -> str:
        return rendered.benchmark_markdown(self)

    def _repr_markdown_(self) -> str:
        return rendered.benchmark_markdown(self)

    def plot(self, *, title: Optional[str] = None):
        """Latency and throughput per batch size (speed-ups over the baseline) as a matplotlib Figure.

        Raises ConfigError without matplotlib (``pip install -e ".[plot]"``).
        """
        from tftrt_toolkit.report.plots import benchmark_figure

        return benchmark_figure([self], title=title)

    def save(self, directory: str, *, plot: bool = True, overwrite: bool = False) -> Dict[str, str]:
        """Write benchmark.json, benchmark.csv and (``plot``) benchmark.png into ``directory``; {name: path}."""
        return write_benchmarks({benchmark_schema.SINGLE_MODEL_NAME: self}, directory, plot=plot, overwrite=overwrite)

    @classmethod
    def from_json(cls, document: dict, name: Optional[str] = None) -> "BenchmarkReport":
        """Model ``name``'s report (beside the shared baseline) from a benchmark.json document.

        ``name`` may be omitted when the file measured one model. Raises ConfigError for an unknown name.
        """
        document = benchmark_schema.normalize(document)
        names = benchmark_schema.model_names(document)
        if name is None and len(names) == 1:
            name = names[0]
        if name not in names:
            raise ConfigError(f"the benchmark measured {', '.join(names) or 'no optimized model'}; "
                              f"pass name= one of them{f' (not {name!r})' if name else ''}.")
        fields = [field.name for field in dataclasses.fields(Measurement)]
        results = [Measurement(**{key: row.get(key) for key in fields})
                   for row in document["results"]
                   if row["role"] in benchmark_schema.BASELINE_ROLES or row.get("name") == name]
        models = {role: description for role, description in document["models"].items() if role == "baseline"}
        models["optimized"] = document["models"].get(name) or {"model": name}
        speedups = [{key: value for key, value in s.items() if key != "name"}
                    for s in document.get("speedups", []) if s.get("name") == name]
        return cls(settings=document["settings"], models=models, results=results, speedups=speedups)

    def __repr__(self) -> str:
        parts = []
        for batch_size in self.settings["batch_sizes"]:
            p50 = self.result("optimized", batch_size).latency_ms["p50"]
            speedup = self.speedup(batch_size)
            parts.append(f"bs{batch_size}: p50 {p50:.2f} ms" + (f" ({speedup['p50_speedup']:.2f}x)" if speedup else ""))
        return f"BenchmarkReport({self.models['optimized']['model']!r}, {'; '.join(parts)})"


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} is not valid; use a whole number >= {minimum}.")


def benchmark(model: Union[ModelLike, ModelRunner], *, baseline: Union[ModelLike, ModelRunner, None] = None,
              **options) -> BenchmarkReport:
    """Measure ``model`` (and ``baseline``, interleaved) at each batch size; return a BenchmarkReport.

    Args:
      model, baseline: model specs, ``LoadedModel``s or ``ModelRunner``s; the baseline must
        have the same signature (usually the original the model was converted from).
      batch_sizes: batch sizes to measure, in order.
      warmup: untimed runs per model and batch size after the first call.
      iterations: timed runs per model and batch size; or ``duration``: about this many
        seconds of timed runs per model and batch size (at least ``MIN_RUNS`` runs).
        Neither: ``DEFAULT_DURATION_S`` seconds.
      data: where inputs come from (default random inputs); a batch is filled by repeating samples.
      threads: (intra, inter) TF thread counts, set before any model loads.
      progress: show a progress bar (in a terminal or notebook; False: none).

    Raises ConfigError (bad settings, threads set too late), SignatureMismatch (baseline
    with another signature), ModelLoadError, DataError.
    """
    return benchmark_many({"optimized": model}, baseline=baseline, **options)["optimized"]


# The role of the original timed in a subprocess at TF's default oneDNN setting.
TF_DEFAULT_BASELINE = benchmark_schema.TF_DEFAULT_BASELINE
# Loading TF and the model in the subprocess, before its first round.
_WORKER_START_S = 300.0


def _tf_default_differs() -> bool:
    """Whether this process's oneDNN setting differs from what plain TF does here by default."""
    from tftrt_toolkit.environment import probe

    env = probe()
    return env.onednn_enabled != env.onednn_default


def _as_pair(threads_in_force) -> Tuple[int, int]:
    if isinstance(threads_in_force, Mapping):
        return int(threads_in_force["intra_op_threads"]), int(threads_in_force["inter_op_threads"])
    return int(threads_in_force[0]), int(threads_in_force[1])


def _start_tf_default_workers(baseline: ModelRunner, batch_sizes, data, threads_in_force, warmup) -> dict:
    """{batch size: ProcessWorker} timing the baseline as plain TF runs it by default; {} when not needed or possible."""
    from tftrt_toolkit.runtime.process_worker import ProcessWorker

    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.models.loader import requires_onednn

    path = getattr(baseline.loaded_model, "saved_model_dir", None)
    if not path or not isinstance(data, (str, list)):
        return {}
    if requires_onednn(path) and not probe().onednn_default:
        # A baseline converted by this toolkit that needs oneDNN cannot run at TF's default here.
        return {}
    workers = {}
    try:
        for batch_size in batch_sizes:
            workers[batch_size] = ProcessWorker({}, path, threads=_as_pair(threads_in_force), data=data,
                                                batch_size=batch_size, warmup=warmup,
                                                onednn_setting="default").start(_WORKER_START_S)
    except BaseException:
        for worker in workers.values():
            worker.close()
        raise
    return workers


def benchmark_many(models: Mapping[str, Union[ModelLike, ModelRunner]], *,
                   baseline: Union[ModelLike, ModelRunner, None] = None,
                   batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, warmup: int = DEFAULT_WARMUP,
                   iterations: Optional[int] = None, duration: Optional[float] = None, data: DataSpec = "synthetic",
                   threads: Threads = (None, None), progress: bool = True, preprocess: str = "auto",
                   input_shape=None, seed: int = 0, strict_data: bool = False,
                   between_rounds: Optional[Callable[[int], None]] = None,
                   baseline_at_tf_default: Optional[bool] = None) -> Dict[str, BenchmarkReport]:
    """Measure several models against one baseline in ONE interleaved run; a report per model.

    Each round runs the baseline and every model once, so machine noise hits all of them alike
    and every report shares the same baseline measurements (speed-ups are comparable across
    models). Options as for ``benchmark``; ``models`` maps a name (not "baseline") to a model.
    ``between_rounds(batch_size)``, when given, is called after every timed round, off the
    clock: a caller interleaves measurements made elsewhere with these (tune times other TF
    thread settings in subprocesses that way). Its time counts toward ``duration``.
    ``strict_data``: refuse (DataError) an image folder holding files that would be skipped.
    ``baseline_at_tf_default``: also time the baseline in a subprocess at TF's default oneDNN
    setting (see the module docstring); None: when that setting differs from this process's.
    """
    if not models or "baseline" in models:
        raise ConfigError("benchmark_many needs at least one model, and none named 'baseline'.")
    batch_sizes = tuple(batch_sizes)
    if not batch_sizes:
        raise ConfigError("batch_sizes is empty; give at least one batch size, e.g. 1,8,32.")
    for batch_size in batch_sizes:
        _check_positive_int("batch size", batch_size)
    if len(set(batch_sizes)) != len(batch_sizes):
        raise ConfigError(f"batch_sizes {list(batch_sizes)} repeats a value; list each batch size once.")
    _check_positive_int("warmup", warmup, minimum=0)
    if iterations is not None and duration is not None:
        raise ConfigError("give either iterations or duration, not both.")
    if iterations is not None:
        _check_positive_int("iterations", iterations)
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration > 0):
        raise ConfigError(f"duration={duration!r} is not valid; use a number of seconds > 0.")
    if iterations is None and duration is None:
        duration = DEFAULT_DURATION_S

    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    threads_in_force = configure_threads(*threads)
    runners: Dict[str, ModelRunner] = {}
    owned: List[ModelRunner] = []
    try:
        for role, spec in [("baseline", baseline)] + list(models.items()):
            if spec is None:
                continue
            runner, owns = open_runner(spec)
            runners[role] = runner
            if owns:
                owned.append(runner)
        names = list(models)
        optimized = runners[names[0]]
        if "baseline" in runners:
            for name in names:
                check_same_signature(runners["baseline"].signature, runners[name].signature,
                                     f"baseline {runners['baseline'].name!r}", f"model {runners[name].name!r}")
        # The mode the optimized model records (chosen when it was converted), else the baseline's conventions.
        hint = hint_of_pair((runners.get("baseline") or optimized).model_info, optimized.model_info)
        source = open_source(data, optimized.signature, preprocess=preprocess, input_shape=input_shape,
                             model_hint=hint, seed=seed, strict=strict_data)
        roles = list(runners)  # baseline first, then the models in the order given
        if baseline_at_tf_default is None:
            baseline_at_tf_default = "baseline" in runners and _tf_default_differs()
        default_workers = (_start_tf_default_workers(runners["baseline"], batch_sizes, data, threads_in_force, warmup)
                           if baseline_at_tf_default and "baseline" in runners else {})

        results: List[Measurement] = []
        # Percent of the planned rounds, per batch size; drawn between rounds, off the clock.
        with progress_bar(description="benchmark", total=len(batch_sizes) * 100, progress=progress, unit="%") as bar:
            for index, batch_size in enumerate(batch_sizes):
                inputs = filled_batch(source, batch_size)
                calls = {role: prepared_call(runners[role], inputs) for role in roles}
                # The first call (graph optimization, engine build) is timed on its own; warm-up is not timed.
                first_call = {role: time_calls(calls[role], count=1)[0] * 1000.0 for role in roles}
                if warmup:
                    time_rounds(calls, rounds=warmup)

                bar.set_postfix_str(f"batch size {batch_size}", refresh=False)

                def show(rounds_done: int, elapsed: float) -> None:
                    done_share = rounds_done / iterations if iterations is not None else elapsed / budget
                    bar.update(index * 100 + int(100 * min(done_share, 1.0)) - bar.n)

                # Interleave: each round runs every model once, so all get the same number of runs.
                budget = None if duration is None else duration * len(roles)
                worker = default_workers.get(batch_size)

                def elsewhere() -> None:  # off the clock: rounds timed in other processes
                    if between_rounds is not None:
                        between_rounds(batch_size)
                    if worker is not None:
                        worker.round()

                measured = time_rounds(
                    calls, rounds=iterations, duration=budget, min_rounds=MIN_RUNS, after_round=show,
                    between_rounds=elsewhere if (between_rounds is not None or worker is not None) else None)
                rss = peak_rss_mb()
                for role in roles:
                    latencies = measured[role]
                    results.append(Measurement(
                        role=role, model=runners[role].name, batch_size=batch_size, runs=len(latencies),
                        first_call_ms=round(first_call[role], 3), latency_ms=latency_stats(latencies),
                        throughput=round(batch_size * len(latencies) / sum(latencies), 3),
                        peak_rss_mb=None if rss is None else round(rss, 1),
                    ))
                if worker is not None:
                    other = worker.finish()["baseline"]
                    results.append(Measurement(
                        role=TF_DEFAULT_BASELINE, model=runners["baseline"].name, batch_size=batch_size,
                        runs=other["runs"], first_call_ms=None, latency_ms=other["latency_ms"],
                        throughput=round(other["throughput"], 3), peak_rss_mb=None))

        settings = _settings(batch_sizes, warmup, iterations, duration, threads, threads_in_force, source,
                             interleaved=len(roles) > 1, started_at=started_at,
                             tf_default_baseline=bool(default_workers))
        reports = {}
        for name in names:
            # Each report sees its model as "optimized" beside the shared baseline measurements.
            mine = [m if m.role in ("baseline", TF_DEFAULT_BASELINE) else dataclasses.replace(m, role="optimized")
                    for m in results if m.role in ("baseline", TF_DEFAULT_BASELINE, name)]
            report = BenchmarkReport(
                settings=settings,
                models={("optimized" if role == name else role): runners[role].describe()
                        for role in roles if role in ("baseline", name)},
                results=mine,
                speedups=[],
            )
            if "baseline" in runners:
                report.speedups = [_speedup(report.result("baseline", b), report.result("optimized", b))
                                   for b in batch_sizes]
                for speedup in report.speedups if default_workers else ():
                    default = report.result(TF_DEFAULT_BASELINE, speedup["batch_size"])
                    optimized_row = report.result("optimized", speedup["batch_size"])
                    speedup["p50_speedup_vs_tf_default"] = default.latency_ms["p50"] / optimized_row.latency_ms["p50"]
                    speedup["throughput_speedup_vs_tf_default"] = optimized_row.throughput / default.throughput
            reports[name] = report
        return reports
    finally:
        for worker in locals().get("default_workers", {}).values():
            worker.close()
        for runner in owned:
            runner.close()


def _speedup(baseline: Measurement, optimized: Measurement) -> dict:
    # Full precision here; tables and CSV round for display (rounding first made ratios < 0.5 drift by >0.1%).
    return {
        "batch_size": optimized.batch_size,
        "p50_speedup": baseline.latency_ms["p50"] / optimized.latency_ms["p50"],
        "throughput_speedup": optimized.throughput / baseline.throughput,
    }


def _settings(batch_sizes, warmup, iterations, duration, requested_threads, threads_in_force, source, *,
              interleaved: bool, started_at: str, tf_default_baseline: bool = False) -> dict:
    import tensorflow as tf

    from tftrt_toolkit.version import __version__
    from tftrt_toolkit.environment import probe

    env = probe()
    return {
        "batch_sizes": list(batch_sizes),
        "warmup": warmup,
        "iterations": iterations,
        "duration_s": duration,
        "interleaved": interleaved,
        "threads": {
            "intra_op_threads": requested_threads[0], "inter_op_threads": requested_threads[1],
            "in_force": threads_in_force,  # 0 = TensorFlow's choice
        },
        "data": source.description,
        "preprocess": source.preprocess,
        "timed_region": "signature call + .numpy() on every output; inputs prepared before, warm-up excluded",
        "tensorflow_version": tf.__version__,
        "toolkit_version": __version__,
        "cpu_model": env.cpu_model,
        "cpu_count": env.cpu_count,
        "cpu_features": list(env.cpu_features),
        "gpus": list(env.gpus),
        "onednn_enabled": env.onednn_enabled,
        # Which oneDNN setting each row ran with: this process's (every row but the TF-default
        # baseline), and TF's own default on this CPU (what plain TF users get).
        "onednn": {
            "this_process": env.onednn_enabled,
            "set_by": env.onednn_set_by,
            "tf_default": env.onednn_default,
            "baseline_tf_default_measured": tf_default_baseline,
        },
        "platform": env.platform,
        "started_at": started_at,
    }


# --------------------------------------------------------------------------- benchmark.json and friends

def benchmark_document(reports: Mapping[str, BenchmarkReport]) -> dict:
    """One benchmark.json document (``benchmark_schema``) for reports that share a baseline, keyed by model name.

    ``benchmark_many``'s reports share the baseline's measurements; the first report's are written.
    """
    if not reports:
        raise ConfigError("no benchmark to write: give at least one report.")
    first = next(iter(reports.values()))
    return benchmark_schema.compose(
        first.settings,
        models={name: report.models["optimized"] for name, report in reports.items()},
        baseline_model=first.models.get("baseline"),
        baseline_results=[m.to_json() for m in first.results if m.role in benchmark_schema.BASELINE_ROLES],
        results={name: [m.to_json() for m in report.results if m.role == "optimized"]
                 for name, report in reports.items()},
        speedups={name: report.speedups for name, report in reports.items()},
    )


def benchmark_csv_rows(reports: Mapping[str, BenchmarkReport]) -> List[dict]:
    """benchmark.csv's rows: the shared baseline once, then each model's (``name`` says which), ``CSV_COLUMNS``."""
    first = next(iter(reports.values()))
    rows = [row for row in first.csv_rows() if row["role"] in benchmark_schema.BASELINE_ROLES]
    rows += [dict(row, name=name) for name, report in reports.items() for row in report.csv_rows()
             if row["role"] == "optimized"]
    return benchmark_schema.in_measuring_order(rows)


def write_benchmarks(reports: Mapping[str, BenchmarkReport], directory: str, *, plot: bool = True,
                     overwrite: bool = False) -> Dict[str, str]:
    """Write benchmark.json, benchmark.csv and (``plot``) benchmark.png for reports sharing a baseline; {file: path}.

    What ``tftrt benchmark --output``, ``run`` and ``tune`` write (``BenchmarkReport.save`` for
    one model). Raises OutputError, ConfigError (``plot`` without matplotlib).
    """
    return rendered.write_benchmark_files(benchmark_document(reports), benchmark_csv_rows(reports), CSV_COLUMNS,
                                          list(reports.values()), directory, names=list(reports),
                                          plot=plot, overwrite=overwrite)


def read_benchmarks(path: str) -> Dict[str, BenchmarkReport]:
    """{model name: BenchmarkReport} from a benchmark.json that benchmark, run or tune wrote (``.plot()`` each).

    Raises ConfigError when the file is missing or is not a benchmark.json.
    """
    document = benchmark_schema.read(path, flag="benchmark")
    return {name: BenchmarkReport.from_json(document, name) for name in benchmark_schema.model_names(document)}
