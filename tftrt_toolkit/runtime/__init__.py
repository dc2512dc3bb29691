"""Using an optimized model: predict, validate against the original, benchmark.

Every function takes a model spec (SavedModel dir, .keras/.h5, keras:NAME, hub:HANDLE), a
``LoadedModel`` or a ``ModelRunner``; models always run through plain ``tf.saved_model.load``.

- ``session.ModelRunner(model)``: context manager; ``run({input: array}) -> {output: array}``.
  ``session.configure_threads(intra, inter)``: set TF's thread pools before anything runs.
- ``predict.predict(model, data, top_k=5, labels=None) -> PredictionResult``: labelled top-k
  (ImageNet names for 1000/1001 classes, softmax only on logits) or raw outputs; ``.to_json()``, ``.csv_rows()``.
- ``validate.validate(original, optimized, data="synthetic", rtol=, atol=, ...) -> ValidationReport``:
  truthy on pass; errors per output, top-1/top-k agreement, and where the images are labelled
  (``labels_csv`` or WordNet ids in the names, ``data.labels``) both accuracies and the drop.
- ``accuracy.LabelledAccuracy`` / ``accuracy.paired_drop``: top-1/top-k accuracy per image and the
  paired 95% interval for the drop (Newcombe's square-and-add), with McNemar's exact p.
- ``benchmark.benchmark(model, baseline=None, batch_sizes=(1, 8, 32), ...) -> BenchmarkReport``:
  latency percentiles, throughput, first call, peak RSS; with a baseline, interleaved runs and speed-ups.

Results are written by ``tftrt_toolkit.report.writers`` (JSON/CSV) and ``report.plots`` (PNG).
"""
