"""Two real `tftrt convert` processes writing one --output: never a mixed or partial directory.

Both processes pass the up-front output check and convert for seconds (MobileNetV2) side by
side, so their commits race for real. Which one wins is up to the scheduler; the tests assert
what must hold either way.
"""

import os
import threading

import numpy as np
import pytest

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.artifacts import METADATA_RELATIVE_PATH, read_metadata
from tftrt_toolkit.environment import probe

ARTIFACT_FILES = {"saved_model.pb", "fingerprint.pb", os.path.join("variables", "variables.index"),
                  os.path.join("variables", "variables.data-00000-of-00001"), METADATA_RELATIVE_PATH}
TOP_LEVEL = {"saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra"}


def files_under(path):
    return {os.path.relpath(os.path.join(root, name), path) for root, _, names in os.walk(path) for name in names}


def bf16_in_graph(saved_model_dir) -> bool:
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.saved_model import loader_impl

    graph = loader_impl.parse_saved_model(str(saved_model_dir)).meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return any(types_pb2.DT_BFLOAT16 in (a.type, *a.list.type) for n in nodes for a in n.attr.values())


def assert_one_whole_artifact(path, expected_source):
    """Files, fingerprint and metadata all from one run; loads and answers with plain TensorFlow."""
    import tensorflow as tf
    from tensorflow.core.protobuf import fingerprint_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    assert files_under(path) == ARTIFACT_FILES
    # fingerprint.pb holds checksums of saved_model.pb and the variables, written with them by one save.
    stored = fingerprint_pb2.FingerprintDef.FromString((path / "fingerprint.pb").read_bytes())
    recomputed = fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(str(path)))
    assert stored == recomputed, "saved_model.pb or variables come from another run than fingerprint.pb"
    metadata = read_metadata(str(path))
    assert metadata["source"]["location"] == str(expected_source)
    assert (metadata["precision"] == "bf16") == bf16_in_graph(path), "metadata describes another graph"
    model = tf.saved_model.load(str(path))
    signature = model.signatures[metadata["signature"]["key"]]
    (name, spec), = signature.structured_input_signature[1].items()
    assert [name, [None if d is None else d for d in spec.shape.as_list()]] == [
        metadata["signature"]["inputs"][0]["name"], metadata["signature"]["inputs"][0]["shape"]]
    outputs = signature(**{name: tf.zeros([1, *spec.shape[1:]], spec.dtype)})
    assert all(np.isfinite(v.numpy()).all() for v in outputs.values())
    return metadata


def test_two_converts_one_output_one_wins_whole(mid_size_saved_model, start_tftrt, tree_hash, tmp_path):
    output = tmp_path / "out"
    before = tree_hash(mid_size_saved_model)
    args = ("convert", f"--model={mid_size_saved_model}", f"--output={output}", "--backend=cpu")
    processes = [start_tftrt(*args), start_tftrt(*args)]
    results = [process.finish() for process in processes]

    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 7], [err for _, _, err in results]
    _, _, loser_err = next(r for r in results if r[0] == 7)
    error_lines = [line for line in loser_err.splitlines() if line.startswith("tftrt convert: error:")]
    assert len(error_lines) == 1 and "Traceback" not in loser_err, loser_err
    assert ("appeared while converting (another process?); nothing was written." in error_lines[0]
            or "already exists; pass --overwrite" in error_lines[0]), error_lines[0]
    assert sorted(os.listdir(tmp_path)) == ["out", "tmp"], "no staging dir left by the loser"
    assert os.listdir(tmp_path / "tmp") == []
    assert_one_whole_artifact(output, mid_size_saved_model)
    assert tree_hash(mid_size_saved_model) == before


@pytest.mark.slow
def test_two_overwrites_replace_atomically(mid_size_saved_model, tiny_saved_model, start_tftrt, tmp_path):
    """Over an existing artifact, two --overwrite runs (different precisions) both succeed; a reader
    polling the output throughout only ever sees complete artifacts; the survivor is one run's whole."""
    output = tmp_path / "out"
    convert(str(tiny_saved_model), str(output), ConversionConfig(backend="cpu"))  # the old model being served
    precisions = ("fp32", "bf16") if probe().cpu_has_bf16 else ("fp32", "fp32")

    partial_views = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                entries = set(os.listdir(output))
            except FileNotFoundError:
                entries = None  # allowed only where renameat2 exchange is unsupported (a gap, never a mix)
            if entries is not None and not TOP_LEVEL <= entries:
                partial_views.append(sorted(entries))
            stop.wait(0.002)  # leave the cores to the converting processes

    watcher = threading.Thread(target=reader, daemon=True)
    watcher.start()
    try:
        processes = [start_tftrt("convert", f"--model={mid_size_saved_model}", f"--output={output}",
                                 "--backend=cpu", f"--precision={precision}", "--overwrite")
                     for precision in precisions]
        results = [process.finish() for process in processes]
    finally:
        stop.set()
        watcher.join()

    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    assert partial_views == []
    assert sorted(os.listdir(tmp_path)) == ["out", "tmp"], "no staging or '-old' directory left"
    metadata = assert_one_whole_artifact(output, mid_size_saved_model)
    assert metadata["precision"] in precisions
