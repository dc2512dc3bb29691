"""benchmark.json: the one schema ``tftrt benchmark``, ``tftrt run`` and ``tftrt tune`` write, and its reader.

Plain dicts only (no TensorFlow, no runtime), so every layer that reads a benchmark.json
(``serving-config``, the plots, a notebook) reads it the same way::

    {
      "schema": "tftrt_toolkit.benchmark/2",
      "settings": {"batch_sizes": [1, 8], "threads": {...}, "cpu_model": ..., ...},
      "models": {"baseline": {"model": ..., "backend": ..., "precision": ...},   # the original, when timed
                 NAME: {...}, ...},                                              # each optimized model
      "results": [{"role": "baseline" | "baseline_tf_default" | "optimized", "name": NAME or "baseline",
                   "model": ..., "batch_size": 1, "runs": ..., "first_call_ms": ..., "latency_ms": {"p50": ...},
                   "throughput": ..., "peak_rss_mb": ...}, ...],
      "speedups": [{"name": NAME, "batch_size": 1, "p50_speedup": ..., "throughput_speedup": ...}, ...]
    }

``tftrt benchmark`` measures one model, named "optimized"; ``run`` names its models after
their rows ("cpu-bf16"), ``tune`` after its candidates. Files written before this schema
(no "schema" field: ``run`` put the model's name in "role" and keyed "speedups" by name) are
read as well (``normalize``).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

from tftrt_toolkit.errors import ConfigError

SCHEMA = "tftrt_toolkit.benchmark/2"
# Roles of a measurement: the original, the original as plain TF runs it by default (timed in
# a subprocess where that oneDNN setting differs), and an optimized model.
BASELINE = "baseline"
TF_DEFAULT_BASELINE = "baseline_tf_default"
OPTIMIZED = "optimized"
BASELINE_ROLES = (BASELINE, TF_DEFAULT_BASELINE)
# The name ``tftrt benchmark`` gives its one measured model.
SINGLE_MODEL_NAME = "optimized"


def compose(settings: dict, models: Mapping[str, dict], baseline_model: Optional[dict],
            baseline_results: Sequence[dict], results: Mapping[str, Sequence[dict]],
            speedups: Mapping[str, Sequence[dict]]) -> dict:
    """The benchmark.json document: ``models``/``results``/``speedups`` are keyed by model name.

    ``baseline_results`` are the original's measurements (roles baseline and
    baseline_tf_default), shared by every model; each measurement is a dict as in the module
    docstring (its "name" is filled in here).
    """
    if BASELINE in models:
        raise ConfigError(f"a benchmarked model may not be named {BASELINE!r}; that name is the original's.")
    return {
        "schema": SCHEMA,
        "settings": settings,
        "models": {**({BASELINE: baseline_model} if baseline_model is not None else {}), **dict(models)},
        "results": in_measuring_order([dict(m, name=BASELINE) for m in baseline_results]
                                      + [dict(m, role=OPTIMIZED, name=name) for name in models
                                         for m in results.get(name, ())]),
        "speedups": [dict(s, name=name) for name in models for s in speedups.get(name, ())],
    }


def in_measuring_order(rows: Sequence[dict]) -> List[dict]:
    """Rows (measurements or CSV rows) per batch size, as they were measured: the baseline, each model, then
    the baseline at TF's default setting (timed in a subprocess). Stable otherwise."""
    sizes: List[int] = []
    for row in rows:
        if row["batch_size"] not in sizes:
            sizes.append(row["batch_size"])
    rank = {BASELINE: 0, OPTIMIZED: 1, TF_DEFAULT_BASELINE: 2}
    return sorted(rows, key=lambda row: (sizes.index(row["batch_size"]), rank.get(row["role"], 1)))


def normalize(document: dict, source: str = "benchmark.json") -> dict:
    """``document`` in this schema (files from before it are upgraded); ConfigError when it is no benchmark.json."""
    results = document.get("results")
    if not isinstance(results, list) or not results or not isinstance(document.get("settings", {}), dict):
        raise ConfigError(f"{source} has no benchmark results; pass the benchmark.json written by "
                          "`tftrt benchmark --output=DIR`, `tftrt run` or `tftrt tune`.")
    if document.get("schema") == SCHEMA:
        return document
    upgraded = []
    for result in results:
        if not isinstance(result, dict) or "role" not in result:
            raise ConfigError(f"{source} has a result without a role; it was not written by tftrt.")
        role = result["role"]
        if role in BASELINE_ROLES:
            upgraded.append(dict(result, name=result.get("name", BASELINE)))
        elif role == OPTIMIZED:
            upgraded.append(dict(result, name=result.get("name", SINGLE_MODEL_NAME)))
        else:  # run's files named the model in "role"
            upgraded.append(dict(result, role=OPTIMIZED, name=role))
    speedups = document.get("speedups") or []
    if isinstance(speedups, dict):  # run's files: {name: [per batch size]}
        speedups = [dict(s, name=name) for name, rows in speedups.items() for s in rows]
    else:
        speedups = [dict(s, name=s.get("name", SINGLE_MODEL_NAME)) for s in speedups]
    return dict(document, schema=SCHEMA, settings=document.get("settings") or {}, results=upgraded, speedups=speedups,
                models={k: v for k, v in (document.get("models") or {}).items() if v is not None})


def read(path: str, *, flag: str = "benchmark_report") -> dict:
    """The benchmark.json at ``path`` in this schema; ConfigError (naming ``--flag``) when missing or not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"--{flag}={path} does not exist; pass the benchmark.json a tftrt benchmark, run or "
                          "tune wrote.") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"--{flag}={path} is not readable JSON ({error}); pass the benchmark.json a tftrt "
                          "run wrote.") from None
    if not isinstance(document, dict):
        raise ConfigError(f"--{flag}={path} is not a tftrt report (a JSON object); pass a benchmark.json.")
    return normalize(document, os.path.basename(path))


def model_names(document: dict) -> List[str]:
    """The optimized models measured in ``document``, in the order written."""
    names: List[str] = []
    for result in document["results"]:
        if result["role"] == OPTIMIZED and result["name"] not in names:
            names.append(result["name"])
    return names


def results_of(document: dict, name: str) -> List[dict]:
    """The measurements of model ``name`` (role optimized), one per batch size."""
    return [r for r in document["results"] if r["role"] == OPTIMIZED and r["name"] == name]


def points(document: dict, name: str) -> Dict[int, dict]:
    """{batch size: {"throughput": samples/s, "p50_ms": ...}} of model ``name``."""
    return {int(r["batch_size"]): {"throughput": float(r["throughput"]), "p50_ms": float(r["latency_ms"]["p50"])}
            for r in results_of(document, name)}
