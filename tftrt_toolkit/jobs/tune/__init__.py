"""Tune: the fastest conversion of a model that stays inside an accuracy budget.

    import tftrt_toolkit as tt
    result = tt.tune("saved_models/efficientnet_lite0", "saved_models/samples", "out/tuned",
                  labels_csv="saved_models/samples/labels.csv")          # budget: top-1 drop <= 0.5 points
    result              # TuneResult(chosen 'cpu-bf16': p50 41.2 ms at batch 8 (1.31x the original); ...)
    result.table        # one dict per candidate (TABLE_COLUMNS); print(result.to_markdown())
    result.chosen_model # the OptimizedModel written to out/tuned

What is tried (``default_candidates``), simplest first so a short ``time_budget`` still
measures the safe choices:
- every backend x precision this machine can run: TensorRT fp32/fp16/int8 (only where
  ``env.tensorrt_usable``), then cpu fp32, bf16 (native-BF16 CPUs), int8 (when
  ``backends.cpu.int8.check_available`` passes; calibrated on ``calibration_data``, default ``data``);
- TensorRT settings per precision: ``minimum_segment_size=10`` (fewer, larger engines) and
  explicit-batch dynamic shapes with the "Optimal" profile built for ``batch_size``.
  ``maximum_cached_engines`` is not searched: engines are cached per input shape and tune
  measures one batch size, where 1 or N cached engines run the very same engine;
- cpu thread pools: each cpu precision again with intra-op = all cores, inter-op = 1 (the
  usual setting for serving one model; TF's default gives inter-op a thread per core too),
  and at batch size 1 also with one thread in each pool (measured faster on small batches);
- at batch size 1, for a model that reads token ids [?, T] on a machine with more than one
  core: fp32 and bf16 split into 2 token branches (``ConversionConfig.token_branches``),
  served at 1 intra-op and 2 inter-op threads.

How each is judged:
- one conversion per distinct ConversionConfig (thread variants reuse it); a candidate that
  fails to convert, load or validate gets a row with the reason and the search goes on;
- validate against the original on ``data``: top-1 agreement, and with ``labels_csv`` each
  model's top-1 accuracy (the budget is then the accuracy drop); thread variants inherit
  their conversion's numbers (threads change summation order, not the answers);
- benchmark: every candidate in ONE ``benchmark_many`` run, interleaved with the original,
  at ``batch_size`` (p50 latency, throughput, speed-up). TensorFlow fixes its thread pools
  once per process, so each other thread setting gets a subprocess (``runtime.process_worker.ProcessWorker``) that
  loads its candidates and the original at those threads; after every round in this
  process, each subprocess runs one round while this one waits. All settings thus share
  the same rounds and the same machine drift, without competing for cores, and their p50s
  are comparable. Thread variants are timed only for conversions inside the budget;
- ``time_budget`` seconds bound the whole search: a conversion is skipped (with a note)
  when it would not leave time to benchmark, and the benchmark is shortened to fit.

The choice is ``choose``, a pure function of the table: the lowest p50 inside the budget;
ties (p50 equal to 0.01 ms, as the table shows it) go to the higher throughput, then the
better agreement or accuracy, then the simpler precision (fp32 > fp16 > bf16 > int8), then
the earlier candidate. When nothing qualifies it returns None and names the candidate that
came closest (smallest shortfall, then fastest).

What is written (each appears whole or not at all):
- ``output``: the chosen SavedModel, renamed into place (a plain SavedModel; its
  ``assets.extra/tftrt_toolkit.json`` gains ``"chosen_by": {"tool": "tune", "budget",
  "reason", "threads", "table", ...}``; threads are a serving setting, not in the graph);
- ``report_dir`` (default ``OUTPUT.tune`` beside it): tune.json, tune.csv, tune.png. It is
  written even when nothing qualifies; then there is no model and ``NoCandidateInBudget``
  (a ValidationFailed, exit 8) is raised, carrying the result.
The other candidates' conversions live in a work directory beside ``output`` that is
removed at the end.
"""

from tftrt_toolkit.jobs.tune.candidates import Candidate, default_candidates  # noqa: E402
from tftrt_toolkit.jobs.tune.choice import (  # noqa: E402
    DEFAULT_MAX_TOP1_DROP, DEFAULT_MIN_TOP1_AGREEMENT, PRECISION_ORDER, TABLE_COLUMNS, Budget, choose, mark_pareto,
)
from tftrt_toolkit.jobs.tune.result import NoCandidateInBudget, TuneResult  # noqa: E402
from tftrt_toolkit.jobs.tune.search import DEFAULT_DURATION_S, DEFAULT_TIME_BUDGET_S, REPORT_SUFFIX, tune  # noqa: E402

__all__ = [
    "Budget", "Candidate", "DEFAULT_DURATION_S", "DEFAULT_MAX_TOP1_DROP", "DEFAULT_MIN_TOP1_AGREEMENT",
    "DEFAULT_TIME_BUDGET_S", "NoCandidateInBudget", "PRECISION_ORDER", "REPORT_SUFFIX", "TABLE_COLUMNS", "TuneResult",
    "choose", "default_candidates", "mark_pareto", "tune",
]
