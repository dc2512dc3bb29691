"""Throughput under concurrent requests: how many requests per second, at what p99, with N clients.

    report = throughput("out/fp32", concurrency=(1, 4), batch_sizes=(1,), duration=5.0)
    report.result(batch_size=1, concurrency=4).requests_per_second
    report.save("bench/")        # throughput.json, throughput.csv, throughput.png

A server's question is not "how fast is one call" but "how many requests per second at what
tail latency with N clients". Here N client threads share ONE loaded model in one process and
each sends requests back to back for ``duration`` seconds, the way TF Serving's request
threads call one SavedModel session: they share TF's intra-/inter-op thread pools, so
``--intra_op_threads=1`` with 4 clients means four requests each on one thread, against all
threads on one request at concurrency 1.

Threads, not processes: TensorFlow releases the GIL while a signature call runs, so Python
holds the GIL only to dispatch a call and fetch its outputs. Processes would each load their
own model and thread pools (N replicas, not one server), which is a different deployment.
The README gives the measurement that checked threads do not distort the result.

Each client times its requests with the toolkit's one timing loop (``runtime.timing``):
inputs prepared before the clock, every output copied to host memory inside it, warm-up
calls excluded. All clients warm up, then start together on a barrier; requests/s is every
client's timed requests over the wall time from that start to the last client's end.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Dict, List, Optional, Sequence, Tuple, Union

from tftrt_toolkit.data import open_source
from tftrt_toolkit.data.samples import filled_batch
from tftrt_toolkit.data.sources import DataSpec
from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.progress import progress_bar
from tftrt_toolkit.report import throughput as rendered
from tftrt_toolkit.runtime.benchmark import DEFAULT_DURATION_S, DEFAULT_WARMUP, _settings, latency_stats
from tftrt_toolkit.runtime.session import ModelLike, ModelRunner, Threads, configure_threads, open_runner
from tftrt_toolkit.runtime.timing import prepared_call, run_clients  # noqa: F401  (run_clients lived here; its old name works)

DEFAULT_CONCURRENCY = (1, 4)
_MAX_CONCURRENCY = 256
CLIENTS = "threads in one process sharing one loaded model and TF's thread pools (as TF Serving's request threads)"

CSV_COLUMNS = ("model", "batch_size", "concurrency", "requests", "duration_s", "requests_per_second",
               "samples_per_second", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms",
               "latency_max_ms")


@dataclasses.dataclass
class ConcurrencyResult:
    """One batch size at one concurrency: what N clients got together."""

    model: str
    batch_size: int
    concurrency: int
    requests: int  # timed requests, all clients together
    duration_s: float  # wall time from the common start to the last client's end
    requests_per_second: float
    samples_per_second: float
    latency_ms: Dict[str, float]  # per request, all clients pooled

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ThroughputReport:
    """Settings (threads, CPU, TF version, concurrency levels), the model, one result per batch size x concurrency."""

    settings: dict
    model: dict
    results: List[ConcurrencyResult]

    def result(self, batch_size: int, concurrency: int) -> ConcurrencyResult:
        for result in self.results:
            if result.batch_size == batch_size and result.concurrency == concurrency:
                return result
        raise KeyError((batch_size, concurrency))

    def to_json(self) -> dict:
        return {"settings": self.settings, "model": self.model, "results": [r.to_json() for r in self.results]}

    def csv_rows(self) -> List[dict]:
        rows = []
        for r in self.results:
            rows.append({
                "model": r.model, "batch_size": r.batch_size, "concurrency": r.concurrency, "requests": r.requests,
                "duration_s": round(r.duration_s, 3), "requests_per_second": round(r.requests_per_second, 2),
                "samples_per_second": round(r.samples_per_second, 2),
                **{f"latency_{stat}_ms": round(r.latency_ms[stat], 3) for stat in ("p50", "p90", "p99", "mean", "max")},
            })
        return rows

    # ------------------------------------------------------------------ rendering (report.throughput)

    def table_lines(self) -> List[str]:
        """The CLI's table: per batch size and number of clients, requests/s, samples/s, latency percentiles."""
        return rendered.table_lines(self)

    def to_markdown(self) -> str:
        return rendered.to_markdown(self)

    def _repr_markdown_(self) -> str:
        return rendered.to_markdown(self)

    def plot(self, *, title: Optional[str] = None):
        """Requests/s and latency against the number of clients as a matplotlib Figure; ConfigError without matplotlib."""
        return rendered.throughput_figure(self, title=title)

    def save(self, directory: str, *, plot: bool = True, overwrite: bool = False) -> Dict[str, str]:
        """Write throughput.json, throughput.csv and (``plot``) throughput.png into ``directory``; {file: path}."""
        return rendered.write_throughput_files(self, directory, CSV_COLUMNS, plot=plot, overwrite=overwrite)

    def __repr__(self) -> str:
        parts = [f"bs{r.batch_size}x{r.concurrency}: {r.requests_per_second:.1f} req/s, p99 {r.latency_ms['p99']:.1f} ms"
                 for r in self.results]
        return f"ThroughputReport({self.model.get('model')!r}, {'; '.join(parts)})"


def _check_levels(name: str, values: Sequence[int], limit: int) -> Tuple[int, ...]:
    values = tuple(values)
    if not values:
        raise ConfigError(f"{name} is empty; give at least one value, e.g. 1,4.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ConfigError(f"{name} entry {value!r} is not valid; use whole numbers 1..{limit}, e.g. 1,4.")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} {list(values)} repeats a value; list each once.")
    return values


def throughput(model: Union[ModelLike, ModelRunner], *, concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
                       batch_sizes: Sequence[int] = (1,), duration: float = DEFAULT_DURATION_S,
                       warmup: int = DEFAULT_WARMUP, data: DataSpec = "synthetic", threads: Threads = (None, None),
                       preprocess: str = "auto", input_shape=None, seed: int = 0,
                       progress: bool = False) -> ThroughputReport:
    """Requests/s, samples/s and latency percentiles of ``model`` at each batch size x concurrency.

    ``tt.throughput`` and ``tftrt benchmark --concurrency`` call this; ``.save(dir)`` on the
    result writes throughput.json/.csv/.png.

    Args:
      model: a model spec, ``LoadedModel`` or ``ModelRunner`` (one loaded model serves every client).
      concurrency: numbers of client threads sending requests at once, e.g. (1, 4).
      batch_sizes: samples per request.
      duration: seconds of timed requests per batch size and concurrency.
      warmup: untimed requests per client before each measurement.
      data, preprocess, input_shape, seed: where request inputs come from (default random).
      threads: (intra, inter) TF thread counts, set before any model loads.
      progress: a progress bar on stderr.

    Raises ConfigError (bad settings, threads set too late), ModelLoadError, DataError.
    """
    concurrency = _check_levels("concurrency", concurrency, _MAX_CONCURRENCY)
    batch_sizes = _check_levels("batch_sizes", batch_sizes, 1 << 16)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration > 0:
        raise ConfigError(f"duration={duration!r} is not valid; use a number of seconds > 0.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup={warmup!r} is not valid; use a whole number >= 0.")
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    threads_in_force = configure_threads(*threads)
    runner, owns = open_runner(model)
    try:
        source = open_source(data, runner.signature, preprocess=preprocess, input_shape=input_shape,
                             model_hint=runner.model_info, seed=seed)
        results = []
        with progress_bar(description="throughput", total=len(batch_sizes) * len(concurrency), progress=progress) as bar:
            for batch_size in batch_sizes:
                inputs = filled_batch(source, batch_size)
                for clients in concurrency:
                    # Each client its own prepared tensors: requests share the model, not their inputs.
                    calls = [prepared_call(runner, inputs) for _ in range(clients)]
                    per_client, wall = run_clients(calls, duration=duration, warmup=warmup)
                    pooled = [seconds for latencies in per_client for seconds in latencies]
                    results.append(ConcurrencyResult(
                        model=runner.name, batch_size=batch_size, concurrency=clients, requests=len(pooled),
                        duration_s=round(wall, 4), requests_per_second=round(len(pooled) / wall, 3),
                        samples_per_second=round(len(pooled) * batch_size / wall, 3),
                        latency_ms=latency_stats(pooled)))
                    bar.update(1)
        settings = _settings(batch_sizes, warmup, None, duration, threads, threads_in_force, source,
                             interleaved=False, started_at=started_at)
        settings.update({"concurrency": list(concurrency), "clients": CLIENTS,
                         "timed_region": "each request: signature call + .numpy() on every output; inputs prepared "
                                         "before, warm-up excluded; requests/s over the wall time of all clients"})
        return ThroughputReport(settings=settings, model=runner.describe(), results=results)
    finally:
        if owns:
            runner.close()


# Today's name for ``throughput``.
measure_throughput = throughput
