"""Peer benchmark: our cpu SavedModels against ONNX Runtime, OpenVINO and TFLite; the command line.

    python benchmarks/peers.py --model=keras:ResNet50 --weights=none --batch_sizes=1,8 \\
        --output=benchmarks/results/resnet50-peers --overwrite
    python benchmarks/peers.py --model=saved_models/efficientnet_lite0 --batch_sizes=1,8 \\
        --output=benchmarks/results/efficientnet_lite0-peers --overwrite
    python benchmarks/peers.py --model=transformer:issue25 --agreement_data=synthetic \
        --calibration_data=synthetic --output=benchmarks/results/transformer-4x256-peers --overwrite

Writes OUTPUT.json (everything), OUTPUT.md (the table) and OUTPUT.png (the chart; needs
matplotlib); ``--help`` lists the flags. The code lives in ``benchmarks/peer_benchmark/``, one
module per concern; its docstring lists the rows and what is and is not on the clock. This file
stays the one command line (the results' "Regenerate:" lines quote it), and the oneDNN-on worker
process is this same script started with ``--onednn_worker``.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# benchmarks/ is not a package: its scripts, and the tests that load them by file, find the peer
# benchmark's package beside this file.
BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

# The package imports TensorFlow before tftrt_toolkit (see its __init__): keep it the first import.
from peer_benchmark.onednn_worker import WORKER_FLAG, worker_main  # noqa: E402
from peer_benchmark.run import main  # noqa: E402
from peer_benchmark.threads import usable_cores  # noqa: E402
from tftrt_toolkit.errors import ToolkitError  # noqa: E402

__all__ = ["main", "usable_cores"]

if __name__ == "__main__":
    if sys.argv[1:] == [WORKER_FLAG]:
        sys.exit(worker_main())
    try:
        main()
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
