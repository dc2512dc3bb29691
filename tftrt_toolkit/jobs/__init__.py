"""Long-running jobs that write files, built from the layers below: ``run``, ``tune``, ``batch_predict`` (Beam).

Each job composes pipeline (convert), runtime (predict, validate, benchmark) and report
(tables, writers, plots), and writes its outputs whole or not at all. Nothing below this
layer imports it; the CLI and the top-level API (``tftrt_toolkit.run``/``tune``) call it.
"""
