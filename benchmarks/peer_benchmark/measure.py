"""What is measured per row: latencies from interleaved rounds (the toolkit's timing loop) and agreement with plain TF."""

from typing import Dict, List

import numpy as np

from .rows import RunFn


DEFAULT_SECONDS = 5.0
DEFAULT_WARMUP = 5
MIN_ROUNDS = 5  # fewer rounds leave a runtime exposed to too few moments of machine noise
# One round gives each runtime a block of about this many seconds of timed calls (at most
# MAX_CALLS_PER_BLOCK calls), so each is timed in its steady state, as when it runs alone.
BLOCK_S = 0.2
MAX_CALLS_PER_BLOCK = 100
# Untimed pause before each block. After a run, ONNX Runtime's worker threads spin on a core
# for ~25 ms and TFLite's for ~8 ms (measured: process CPU time in 10 ms windows after a call);
# a runtime started inside that window shares its cores with them and was measured up to
# 100x slower on a tiny model. 50 ms lets them go idle; the block's first call (untimed) then
# wakes the runtime's own threads.
SETTLE_S = 0.05


def first_call_ms(run: RunFn) -> float:
    from tftrt_toolkit.runtime.timing import time_calls

    return time_calls(run, count=1)[0] * 1000.0


def interleaved_latencies(calls: Dict[str, RunFn], *, warmup: int, rounds: int) -> Dict[str, List[float]]:
    """Per runtime, the seconds of each timed run, from ``rounds`` interleaved rounds (the toolkit's timing loop).

    Each round gives every runtime, in turn (the first one rotating round by round), one
    block: a pause, one untimed call, then about ``BLOCK_S`` of timed back-to-back calls.
    A row in the oneDNN-on worker (``RemoteCall``) times its blocks there.
    """
    from tftrt_toolkit.runtime.timing import time_calls, time_rounds

    per_call = {key: float(np.median(time_calls(call, count=max(warmup, 1)))) for key, call in calls.items()}
    calls_per_block = {key: int(min(MAX_CALLS_PER_BLOCK, max(1, round(BLOCK_S / per_call[key])))) for key in calls}
    return time_rounds(calls, rounds=rounds, calls_per_turn=calls_per_block, warmup_per_turn=1, pause_s=SETTLE_S,
                       rotate=True)


def agreement(reference: np.ndarray, values: np.ndarray) -> dict:
    """Top-1 agreement (class scores: last axis) and max abs difference of one output vs plain TF's."""
    reference = np.asarray(reference, np.float64)
    values = np.asarray(values, np.float64)
    if values.shape != reference.shape:
        return {"top1_agreement": 0.0, "max_abs_diff": None,
                "problem": f"output shape {list(values.shape)} differs from plain TF's {list(reference.shape)}"}
    result = {"max_abs_diff": float(np.max(np.abs(values - reference))) if values.size else 0.0}
    if reference.ndim >= 2 and reference.shape[-1] > 1:
        result["top1_agreement"] = float(np.mean(values.argmax(-1) == reference.argmax(-1)))
        top5 = np.argsort(-values, axis=-1)[..., :5]
        result["top5_contains_tf_top1"] = float(np.mean(np.any(top5 == reference.argmax(-1)[..., None], axis=-1)))
    return result
