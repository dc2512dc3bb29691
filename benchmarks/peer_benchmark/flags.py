"""The command line of ``python benchmarks/peers.py``: its flags and their checks (ConfigError names the flag)."""

import argparse
import math
import os

from tftrt_toolkit.errors import ConfigError

from . import ROOT
from . import __doc__ as PACKAGE_DOC
from .inputs import PHOTOS_PREFIX
from .measure import BLOCK_S, DEFAULT_SECONDS, DEFAULT_WARMUP, MIN_ROUNDS
from .rows import RUNTIMES
from .threads import usable_cores


def parse_args(argv):
    """The flags of ``argv``, checked and filled in; ConfigError names the bad flag and what to pass."""
    parser = argparse.ArgumentParser(prog="benchmarks/peers.py", description=PACKAGE_DOC.splitlines()[0])
    parser.add_argument("--model", default="saved_models/efficientnet_lite0",
                        help="anything tftrt accepts: SavedModel dir, .keras file, keras:NAME, hub:HANDLE; or transformer:SIZE "
                             "(issue25, bert_base, tiny: benchmarks/models/transformer.py builds it)")
    parser.add_argument("--weights", default="imagenet", help="keras:NAME weights: imagenet or none")
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--output", required=True, help="path prefix: writes OUTPUT.json, OUTPUT.md, OUTPUT.png")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"rows to run, from {','.join(RUNTIMES)} (tf, the reference, is always run)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="about this many seconds of timed runs per runtime and batch size "
                             f"(default {DEFAULT_SECONDS:g})")
    parser.add_argument("--rounds", type=int, default=None,
                        help="exactly this many interleaved rounds instead of --seconds "
                             "(each round: one block per runtime)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="untimed calls per runtime and batch size before the rounds (they also size its blocks)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for every runtime (default: the cores this process may use)")
    parser.add_argument("--data", default="synthetic",
                        help="timing inputs (values do not change the work done): synthetic, an image dir, .npy/.npz")
    parser.add_argument("--agreement_data", default="photos:saved_models/samples",
                        help="inputs for the agreement check: photos:DIR (random crops, flips and brightness changes "
                             "of DIR's photos; image models only, others use --data) or a --data spec")
    parser.add_argument("--calibration_data", default="photos:saved_models/samples",
                        help="cpu_int8's calibration inputs, as --agreement_data (other crops of the photos)")
    parser.add_argument("--agreement_samples", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="also measure requests/s at batch 1 with this many requests in flight, each runtime in its "
                             "serving mode (see peer_benchmark/concurrency.py); e.g. the cores, --concurrency=2")
    parser.add_argument("--work_dir", default=None, help="keep converted models here (default: a temp dir, removed)")
    parser.add_argument("--noplot", action="store_true", help="skip the PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace existing OUTPUT.* files")
    args = parser.parse_args(argv)

    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--batch_sizes={args.batch_sizes!r} is not a list of whole numbers, e.g. 1,8") from None
    if not args.batch_sizes or min(args.batch_sizes) < 1 or len(set(args.batch_sizes)) != len(args.batch_sizes):
        raise ConfigError(f"--batch_sizes={args.batch_sizes} must list distinct whole numbers >= 1, e.g. 1,8")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ConfigError(f"--runtimes: unknown {unknown}; choose from {','.join(RUNTIMES)}")
    args.runtimes = [key for key in RUNTIMES if key == "tf" or key in runtimes]
    if args.seconds is not None and args.rounds is not None:
        raise ConfigError("give --seconds or --rounds, not both")
    if args.rounds is None and args.seconds is None:
        args.seconds = DEFAULT_SECONDS
    if (args.rounds is not None and args.rounds < 1) or (args.seconds is not None and args.seconds <= 0):
        raise ConfigError("--rounds must be >= 1 and --seconds > 0")
    if args.rounds is None:
        args.rounds = max(MIN_ROUNDS, math.ceil(args.seconds / BLOCK_S))
    if args.concurrency is not None and args.concurrency < 1:
        raise ConfigError(f"--concurrency={args.concurrency} is not valid; give the requests in flight, a whole number >= 1")
    if args.warmup < 0 or args.agreement_samples < 1:
        raise ConfigError("--warmup must be >= 0 and --agreement_samples >= 1")
    for flag in ("agreement_data", "calibration_data"):
        spec = getattr(args, flag)
        if spec.startswith(PHOTOS_PREFIX):
            photos = spec[len(PHOTOS_PREFIX):]
            if not os.path.isdir(photos) and os.path.isdir(os.path.join(ROOT, photos)):
                photos = os.path.join(ROOT, photos)  # the default, run from another directory
            if not os.path.isdir(photos):
                raise ConfigError(f"--{flag}={spec}: {photos!r} is not a directory; "
                                  "pass photos:DIR with .jpg/.png photos, or a --data spec")
    args.threads = args.threads or usable_cores()
    return args
