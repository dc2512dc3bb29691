"""``--concurrency=N``: requests/s at batch 1 with N requests in flight, every row on the same cores.

A server's number is requests per second with many single requests at once, and each runtime
has its own way to serve them:

  TF SavedModels (tf, cpu_*)  N client threads sharing one loaded model, the way TF Serving's
                  request threads share a session, at TF's threads (``--threads`` intra-op, TF's
                  inter-op default) and at 1 intra-op thread per request (intra 1, inter N, in a
                  subprocess: TF fixes its pools once per process). Plain TF reports both; ours
                  report the better one (the threading ``tftrt tune`` would choose), both in the JSON.
  ONNX Runtime    one session per request thread, 1 intra-op thread each (its guide's server shape)
  OpenVINO        ``PERFORMANCE_HINT=THROUGHPUT`` with N streams, ``INFERENCE_NUM_THREADS=--threads``,
                  one infer request per client
  TFLite          one interpreter per request thread, 1 thread each (XNNPACK)

N client threads each send requests back to back (``tftrt_toolkit.runtime.timing.run_clients``:
all start together; requests/s = every client's timed requests over the wall time). The runtimes
release the GIL while they compute. Every row uses the same cores: N = ``--concurrency`` clients
on ``--threads`` intra-op threads in total (one per client, or ``--threads`` shared). Rows take
turns in interleaved blocks, like the latency rounds, so machine drift hits them alike.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from .rows import RunFn

ONE_THREAD = "one_thread_per_request"
TF_THREADS = "tf_threads"
SERVED = "served"  # a peer's own serving mode
BLOCKS = 3


def concurrent_calls(runner, inputs, clients: int, threads: int) -> Tuple[List[RunFn], str]:
    """(one call per client, the serving mode in words) for a runner built by this package."""
    return runner.concurrent(inputs, clients, threads)


def measure_concurrency(runners: Dict[str, object], saved_models: Dict[str, Tuple[str, str]], inputs, *, clients: int,
                        threads: int, seconds: float, data, log) -> Dict[str, dict]:
    """{row key: {"clients", "requests_per_second": {setting: rate}, "setting": the better one, "modes": {...}}}.

    ``runners``: rows served in this process; ``saved_models``: {key: (SavedModel dir, oneDNN
    setting for ProcessWorker)} for the TF rows, also timed at 1 intra-op thread per request in
    a subprocess per oneDNN setting.
    """
    from tftrt_toolkit.errors import ToolkitError, first_line
    from tftrt_toolkit.runtime.process_worker import ProcessWorker
    from tftrt_toolkit.runtime.timing import run_clients

    calls: Dict[str, List[RunFn]] = {}
    found: Dict[str, dict] = {}
    for key, runner in runners.items():
        try:
            calls[key], mode = concurrent_calls(runner, inputs, clients, threads)
        except Exception as error:  # a runtime that cannot serve N at once says why in its row
            found[key] = {"clients": clients, "problem": f"{type(error).__name__}: {first_line(error)}"}
            continue
        found[key] = {"clients": clients, "requests_per_second": {}, "modes": {
            TF_THREADS if key in saved_models else SERVED: mode}}
    workers: Dict[str, Tuple[ProcessWorker, List[str]]] = {}
    for setting in sorted({onednn for _, onednn in saved_models.values()}):
        keys = [key for key, (_, onednn) in saved_models.items() if onednn == setting]
        models = {key: saved_models[key][0] for key in keys[1:]}
        worker = ProcessWorker(models, saved_models[keys[0]][0], threads=(1, clients), data=data, batch_size=1,
                               warmup=1, onednn_setting=setting)
        try:
            worker.start(timeout=600.0)
        except ToolkitError as error:
            worker.close()
            for key in keys:
                found.setdefault(key, {"clients": clients})["problem_one_thread"] = first_line(error)
            continue
        workers[setting] = (worker, keys)
    totals = {key: [0, 0.0] for key in calls}
    try:
        block_s = max(0.05, seconds / BLOCKS)
        for block in range(BLOCKS):
            order = list(calls)
            order = order[block % len(order):] + order[:block % len(order)] if order else order
            for key in order:
                per_client, wall = run_clients(calls[key], duration=block_s, warmup=1)
                totals[key][0] += sum(len(values) for values in per_client)
                totals[key][1] += wall
            for worker, _ in workers.values():
                worker.concurrent(block_s, clients)
        for setting, (worker, keys) in workers.items():
            measured = worker.finish()
            for index, key in enumerate(keys):
                result = measured["baseline" if index == 0 else key]["concurrent"]
                found[key]["requests_per_second"][ONE_THREAD] = round(result["requests"] / result["wall_s"], 2)
                found[key]["modes"][ONE_THREAD] = (f"{clients} client threads sharing one loaded model, intra-op 1, "
                                                   f"inter-op {clients} (subprocess, TF oneDNN: {setting})")
    finally:
        for worker, _ in workers.values():
            worker.close()
    for key, (requests, wall) in totals.items():
        rate = round(requests / wall, 2)
        found[key]["requests_per_second"][TF_THREADS if key in saved_models else SERVED] = rate
    for key, result in found.items():
        rates = result.get("requests_per_second") or {}
        if rates:
            result["setting"] = max(rates, key=rates.get)
            log(f"  {key}: " + ", ".join(f"{setting} {rate:.1f} req/s" for setting, rate in rates.items()))
    return found
