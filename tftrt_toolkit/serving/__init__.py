"""Ready for TF Serving: warmup records inside a model, and the server's model and batching config.

- ``warmup``: writes ``assets.extra/tf_serving_warmup_requests`` (TFRecord of
  ``tensorflow.serving.PredictionLog``), which TF Serving replays when it loads a version,
  and reads such a file back, checking every record against the model's signatures.
- ``model_config``: ``models.config`` (a ``ModelServerConfig`` text proto) and
  ``batching_parameters.txt`` (TF Serving's ``BatchingParameters``), from measurements
  when a benchmark or tune report is given, otherwise from documented defaults.

TF Serving's protos come from the optional extra ``pip install 'tftrt_toolkit[serving]'``
(``tensorflow-serving-api``); they are imported only when a warmup file is written or checked.
"""
