"""Peer benchmark: our cpu SavedModels against the runtimes users would pick instead, in one process run.

    python benchmarks/peers.py --model=keras:ResNet50 --weights=none --batch_sizes=1,8 \\
        --output=benchmarks/results/resnet50-peers --overwrite
    python benchmarks/peers.py --model=saved_models/efficientnet_lite0 --batch_sizes=1,8 \\
        --output=benchmarks/results/efficientnet_lite0-peers --overwrite

Writes OUTPUT.json (everything), OUTPUT.md (the table) and OUTPUT.png (the chart; needs
matplotlib). Rows, in order; a row whose package is missing, or whose conversion or first run
fails, is listed as skipped with the reason and not timed:

  tf              plain TF: ``tf.saved_model.load`` of the original, as the user runs it by default
                  (TF's own oneDNN default for this CPU): the 1.00x reference
  tf_onednn       the same with TF's oneDNN ops on (``TF_ENABLE_ONEDNN_OPTS=1``), where that is not
                  the default (AVX2-only CPUs); skipped where the tf row already has them on
  cpu_fp32/bf16/int8   tftrt_toolkit ``convert(..., ConversionConfig(backend="cpu", precision=...))``,
                  run with oneDNN on, as the toolkit runs them (int8 models need it)
  onnxruntime     ONNX Runtime fp32 on tf2onnx's export of the SavedModel
  onnxruntime_int8     the same after ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel)
  openvino_f32/bf16    OpenVINO CPU on ``ov.convert_model(SavedModel)``, inference precision hint f32 / bf16
  openvino_int8   the same after NNCF post-training quantization (``nncf.quantize``)
  tflite_fp32     TFLite (XNNPACK) on ``TFLiteConverter.from_concrete_functions``
  tflite_int8     the same with ``Optimize.DEFAULT`` (dynamic-range int8 weights)
  tflite_full_int8     the same with a representative dataset and int8 ops only (full-integer)

Every int8 row (ours and the peers') is calibrated on the same arrays: ``--calibration_data``
read through tftrt_toolkit.data as our int8 conversion reads it, in its default batches.

Rows that need TF's oneDNN on where this process has it off (tf_onednn, cpu_*) are built and
timed in a worker process started with ``TF_ENABLE_ONEDNN_OPTS=1`` (TF reads the switch once,
at import), on this process's cue, block by block, so they stay in the interleaved rounds. Each
row records the process setting it ran with (the table's "TF oneDNN" column).

Only the tf and cpu_* rows leave a TF SavedModel (``tf.saved_model.load`` / TF Serving run it);
the table says so per row.

Honesty rules (what is and is not on the clock):
- every runtime runs in this one process on the same input arrays, with intra-op threads =
  ``--threads`` (default: the cores this process may use): TF via tf.config.threading before
  TF starts, ORT ``intra_op_num_threads``, OpenVINO ``INFERENCE_NUM_THREADS``, TFLite ``num_threads``;
- inputs are put in each runtime's own form before the clock (a TF tensor, TFLite's input
  tensor set once, OpenVINO sharing the numpy buffer); a timed run is one inference plus
  copying every output to a host numpy array; the first call and ``--warmup`` runs are excluded;
- runtimes are INTERLEAVED: each round gives every runtime, in turn, one block (the first
  runtime rotating round by round), so drifting machine load hits all alike; a block is an
  untimed pause (the previous runtime's spinning worker threads go idle), one untimed call
  (wakes this runtime's threads), then ~0.2 s of timed back-to-back calls: each runtime is timed
  in its steady state, as when it runs alone, and gets the same share of every round;
- speed-up = plain TF's median latency / the runtime's median latency, per batch size;
- before timing, every runtime's first output is compared with plain TF's on the same
  ``--agreement_samples`` inputs (top-1 agreement, max abs difference), so a broken conversion
  shows in the table instead of being timed as a win. For image models these are random crops,
  flips and brightness changes of real photos (``--agreement_data``): on random pixels most
  classifiers answer one class for every input, and agreeing on it proves little.

The code, one module per concern (``python benchmarks/peers.py`` is its command line):

  rows             the table's rows: what each runtime is called, whose it is, how it must run
  building         what every row's builder shares: the Context, package checks, converter processes
  tf_rows, onnxruntime_rows, openvino_rows, tflite_rows
                   one runtime each: its runner (bind inputs, call) and the builder that converts for it
  builders         row key -> builder; rows that need oneDNN on where it is off go to the worker
  onednn_worker    the worker process with TF's oneDNN ops on, and the requests it answers
  threads          the same intra-op threads for TF and every runtime
  measure          the interleaved timing rounds and the agreement check
  inputs           the agreement and calibration inputs (augmented photos, calibration batches)
  flags            the command line and its checks
  run              one run: build every row, check agreement, time, collect the settings
  outputs, cells, chart   OUTPUT.md and OUTPUT.json; how a row's numbers read; OUTPUT.png
"""

import os

# The repository: the default photos (saved_models/samples) and the command line (benchmarks/peers.py).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The reference is plain TF as users run it: with TF's own oneDNN default for this CPU (or the
# user's TF_ENABLE_ONEDNN_OPTS). Importing tftrt_toolkit turns oneDNN on before TensorFlow is
# imported (toolkit processes want it), so TensorFlow comes first, before any module of this
# package imports tftrt_toolkit, and keeps what it reads; rows that need oneDNN on run in a
# worker process when it is off here.
import tensorflow  # noqa: F401,E402  (imported for its side effect: TF fixes its oneDNN switch now)
