"""What tune tries on this machine: a Candidate is a conversion config plus the TF threads to serve it with."""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

from tftrt_toolkit.config import Backend, ConversionConfig
from tftrt_toolkit.errors import ConfigError

TRT_LARGE_SEGMENT = 10
Threads = Tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One thing to try: a conversion config, the TF threads to serve it with (None: TF's choice), and its settings in words."""

    config: ConversionConfig
    threads: Optional[Threads] = None
    settings: str = ""

    def __post_init__(self):
        if self.config.backend is Backend.AUTO:
            raise ConfigError("a tune candidate needs a concrete backend (cpu or tensorrt), not auto.")
        if self.threads is not None:
            threads = tuple(self.threads)
            if len(threads) != 2 or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in threads):
                raise ConfigError(f"threads={self.threads!r} is not valid; give (intra_op, inter_op) whole numbers >= 0.")
            object.__setattr__(self, "threads", threads)

    @property
    def name(self) -> str:
        parts = [f"{self.config.backend.value}-{self.config.precision.value}"]
        if self.settings:
            parts.append(self.settings)
        if self.threads is not None:
            parts.append(f"intra={self.threads[0]} inter={self.threads[1]}")
        return " ".join(parts)

    @classmethod
    def parse(cls, text: str, env) -> "Candidate":
        """'cpu-bf16', 'bf16' (on the backend ``auto`` picks here), 'cpu-bf16@2x1' (intra x inter threads) -> Candidate.

        Raises ConfigError for anything else, or a backend/precision pair that cannot exist.
        """
        spec, _, threads_text = text.strip().lower().partition("@")
        backend, _, precision = spec.rpartition("-")
        if not backend:
            backend, _ = env.recommended_backend()
        threads = None
        if threads_text:
            intra, _, inter = threads_text.partition("x")
            if not (intra.isdigit() and inter.isdigit()):
                raise ConfigError(f"candidate {text!r}: threads {threads_text!r} are not valid; write INTRAxINTER, "
                                  "e.g. cpu-bf16@2x1 (0 = TF's choice).")
            threads = (int(intra), int(inter))
        return cls(ConversionConfig(backend=backend, precision=precision), threads=threads)


# Measured on 2 cores only (benchmarks/transformer_cpu_notes.md, "Token branches"): 4 branches on 2 cores lost.
TOKEN_BRANCHES = 2


def takes_token_ids(signature, branches: int = TOKEN_BRANCHES) -> bool:
    """Whether the model reads token ids [?, T] (an integer input) whose T the conversion splits ``branches`` ways."""
    from tftrt_toolkit.backends.cpu.token_branches import tokens_split

    return any(tensor.dtype in ("int32", "int64") and tensor.shape is not None and len(tensor.shape) == 2
               and tokens_split(tensor.shape[1], branches) for tensor in signature.inputs)


def default_candidates(env, batch_size: int = 8, signature=None) -> List[Candidate]:
    """Every backend x precision this machine can run, plus the settings worth trying, simplest first.

    See the module docstring for what and why. ``env`` is an ``environment.Environment``;
    ``signature`` (the model's) adds token branches for a sequence model at batch size 1.
    """
    from tftrt_toolkit.backends.precisions import offered_precisions

    candidates: List[Candidate] = []
    if env.tensorrt_usable:
        precisions = ("fp32", "fp16", "int8")
        candidates += [Candidate(ConversionConfig(backend="tensorrt", precision=p)) for p in precisions]
        for precision in ("fp16", "int8", "fp32"):  # the likely winners' settings first
            candidates.append(Candidate(ConversionConfig(backend="tensorrt", precision=precision,
                                                         minimum_segment_size=TRT_LARGE_SEGMENT),
                                        settings=f"min-segment={TRT_LARGE_SEGMENT}"))
            candidates.append(Candidate(ConversionConfig(backend="tensorrt", precision=precision, use_dynamic_shape=True,
                                                         dynamic_shape_profile_strategy="Optimal",
                                                         build_shapes=((batch_size,),)),
                                        settings=f"dynamic-shape(Optimal, bs{batch_size})"))
    cpu = offered_precisions(env, "cpu")
    candidates += [Candidate(ConversionConfig(backend="cpu", precision=p)) for p in cpu]
    # TF's default gives both pools a thread per core; serving one model at a time usually wants
    # every core on each op and no concurrent ops competing for them.
    candidates += [Candidate(ConversionConfig(backend="cpu", precision=p), threads=(env.cpu_count, 1)) for p in cpu]
    if batch_size == 1 and env.cpu_count > 1:
        # At batch 1 TF's oneDNN kernels can run slower on several threads than on one: on 2 cores
        # the int8 ResNet50's convolutions took 9.7 ms on 2 threads against 7.9 ms on 1, and the
        # whole call 15 ms against 10 (benchmarks/int8_cpu_notes.md, "Where the time goes").
        candidates += [Candidate(ConversionConfig(backend="cpu", precision=p), threads=(1, 1)) for p in cpu]
        if signature is not None and takes_token_ids(signature):
            # A sequence model's per-token work in a branch per core, each op on one thread
            # (backends/cpu/token_branches.py): served at 1 intra-op thread, a branch per inter-op thread.
            candidates += [Candidate(ConversionConfig(backend="cpu", precision=p, token_branches=TOKEN_BRANCHES),
                                     threads=(1, TOKEN_BRANCHES), settings=f"token-branches={TOKEN_BRANCHES}")
                           for p in cpu if p in ("fp32", "bf16")]
    return candidates
