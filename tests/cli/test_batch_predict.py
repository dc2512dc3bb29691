"""tftrt batch-predict as users run it: Beam options passed through, shards written, one line without Beam."""

import os
import sys

import pytest

from tftrt_toolkit.errors import BackendUnavailable


def test_cli_writes_shards_and_passes_beam_options(beam, tiny_saved_model, images, labels_file, tmp_path, capsys):
    from tftrt_toolkit.cli.main import main

    prefix = tmp_path / "cli"
    # --direct_running_mode is Beam's, not ours: the dispatcher must hand it to the pipeline.
    assert main(["tftrt", "batch-predict", f"--model={tiny_saved_model}", f"--data={images['glob']}",
                 f"--output={prefix}", "--direct_running_mode=in_memory", f"--labels={labels_file}",
                 "--format=csv", "--top_k=2"]) == 0
    out = capsys.readouterr().out
    assert "6 predicted, 1 failed" in out and "cli-errors-00000-of-00001.csv" in out
    lines = [line for path in sorted(tmp_path.glob("cli-0*.csv")) for line in path.read_text().splitlines()]
    assert lines.count("image,rank,class_id,label,probability") == len(list(tmp_path.glob("cli-0*.csv")))
    assert len([line for line in lines if line.startswith(images["good"][0] + ",")]) == 2  # top_k rows


def test_without_beam_the_command_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    from tftrt_toolkit.cli.main import main
    from tftrt_toolkit.jobs.batch_predict import batch_predict

    monkeypatch.setitem(sys.modules, "apache_beam", None)  # `import apache_beam` now raises ImportError
    with pytest.raises(BackendUnavailable, match=r'pip install -e "\.\[beam\]"'):
        batch_predict("model", "*.jpg", str(tmp_path / "p"))
    code = main(["tftrt", "batch-predict", "--model=m", "--data=*.jpg", f"--output={tmp_path / 'p'}"])
    err = capsys.readouterr().err
    assert code == BackendUnavailable.exit_code
    assert err.strip().splitlines() == [
        'tftrt batch-predict: error: batch-predict needs Apache Beam, which is not installed here; run: pip install -e ".[beam]"']


def test_a_folder_is_data_like_everywhere_else(beam, tiny_saved_model, images, tmp_path, run_cli):
    # Was: "none of the 1 file(s) could be read and decoded ... IsADirectoryError".
    folder = os.path.dirname(images["glob"])
    with open(os.path.join(folder, "notes.txt"), "w") as handle:
        handle.write("shot list")
    result = run_cli("batch-predict", f"--model={tiny_saved_model}", f"--data={folder}", f"--output={tmp_path / 'p'}",
                     "--direct_num_workers=1")
    assert result.out.startswith("6 predicted, 1 failed")  # broken.jpg is an image by name: dead-lettered
    assert "tftrt batch-predict: skipped 1 file: 1 not an image (.txt)" in result.err
    run_cli("batch-predict", f"--model={tiny_saved_model}", f"--data={folder}", f"--output={tmp_path / 'q'}",
            "--strict_data", expect_exit=4)
