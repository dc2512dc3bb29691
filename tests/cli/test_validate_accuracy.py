"""tftrt validate on labelled images: both accuracies, the drop and its interval, in the summary users read."""

import numpy as np
from PIL import Image


def test_cli_validate_prints_both_accuracies_the_drop_and_its_interval(run_cli, tiny_saved_model, tiny_other_weights,
                                                                      tmp_path):
    # Noise images named with the WordNet ids of classes 0..3 (the tiny model has ten classes).
    rng = np.random.default_rng(0)
    for i, wordnet_id in enumerate(["n01440764", "n01443537", "n01484850", "n01491361"]):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{wordnet_id}_{i}.png")
    result = run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={tiny_other_weights}",
                     f"--data={tmp_path}", "--min_top1_agreement=0", "--min_within_tolerance=0", "--atol=1e9")
    assert "accuracy on 4 labelled images" in result.err
    assert "top-1" in result.err and "drop" in result.err and "95% interval" in result.err
