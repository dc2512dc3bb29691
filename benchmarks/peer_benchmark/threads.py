"""The same intra-op threads for every runtime: TF's, fixed before its runtime starts, and the cores to use."""

import os

from tftrt_toolkit.errors import ConfigError


def pin_tf_threads(threads: int, inter_op_threads=None) -> dict:
    """Give TF ``threads`` intra-op threads; returns what is in force. ConfigError when TF already runs otherwise.

    TF fixes its pools when its runtime starts. Its default (0) is one thread per schedulable
    CPU (``port::MaxParallelism``) unless TF_NUM_INTRAOP_THREADS says otherwise, so an already
    started TF with 0 has exactly ``threads`` when that is the schedulable CPU count.
    """
    from tftrt_toolkit.runtime.session import configure_threads, current_threads

    try:
        return configure_threads(threads, inter_op_threads)
    except ConfigError:
        in_force = current_threads()
        default_is_same = (in_force["intra_op_threads"] == 0 and not os.environ.get("TF_NUM_INTRAOP_THREADS")
                           and threads == len(os.sched_getaffinity(0)))
        if not default_is_same:
            raise
        return {**in_force, "note": f"TF had started with its default (0 = {threads} schedulable CPUs)"}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
