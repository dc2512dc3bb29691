"""ModelRunner and configure_threads: plain-TF loading, host outputs, clear errors."""

import gc
import re

import numpy as np
import pytest

from tftrt_toolkit.errors import ConfigError, DataError, ModelLoadError
from tftrt_toolkit.models.loader import load_model
from tftrt_toolkit.runtime.session import ModelRunner, configure_threads, current_threads


def test_run_returns_numpy_outputs_named_by_signature(tiny_saved_model, random_images):
    with ModelRunner(str(tiny_saved_model)) as runner:
        gc.collect()  # the loaded object is kept alive by the runner, so the function still has its variables
        outputs = runner.run({"images": random_images})
        assert runner.signature.output_names == ("probabilities",)
    assert isinstance(outputs["probabilities"], np.ndarray)
    assert outputs["probabilities"].shape == (4, 10)
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=1e-5)


def test_accepts_a_loaded_model_and_leaves_it_open(tiny_saved_model, random_images):
    with load_model(str(tiny_saved_model)) as loaded:
        with ModelRunner(loaded) as runner:
            runner.run({"images": random_images})
            assert runner.describe()["model"] == loaded.spec.text
        assert __import__("os").path.isdir(loaded.saved_model_dir)  # closing the runner did not close the caller's model
        with ModelRunner(loaded) as runner:
            runner.run({"images": random_images})


def test_missing_input_and_wrong_shape_are_data_errors(tiny_saved_model):
    with ModelRunner(str(tiny_saved_model)) as runner:
        with pytest.raises(DataError, match="missing images"):
            runner.run({"pixels": np.zeros((1, 32, 32, 3), np.float32)})
        with pytest.raises(DataError, match=re.escape("takes shape [?,32,32,3]; got [1, 8, 8]")):
            runner.run({"images": np.zeros((1, 8, 8), np.float32)})


def test_missing_model_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError):
        ModelRunner(str(tmp_path / "nowhere")).load()


def test_use_before_load_says_how(tiny_saved_model):
    with pytest.raises(ConfigError, match="not loaded"):
        ModelRunner(str(tiny_saved_model)).signature


def test_threads_same_value_is_fine_other_value_after_start_is_a_config_error(tiny_saved_model):
    with ModelRunner(str(tiny_saved_model)):
        pass  # TF's runtime has started in this process now
    current = current_threads()
    assert configure_threads(current["intra_op_threads"], current["inter_op_threads"]) == current
    assert configure_threads(None, None) == current
    with pytest.raises(ConfigError, match="before loading any model"):
        configure_threads(current["intra_op_threads"] + 3, None)
    with pytest.raises(ConfigError, match="whole number"):
        configure_threads(-1, None)
