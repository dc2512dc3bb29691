"""tftrt doctor: what this machine can run, as text and as JSON."""

import json

def test_doctor_text_and_json(tftrt):
    code, out, _ = tftrt("doctor")
    assert code == 0 and "recommended backend" in out and "TensorRT build" in out
    code, out, _ = tftrt("doctor", "--json")
    report = json.loads(out)
    assert report["tensorflow_version"].startswith("2.17")
    assert report["recommended_backend"] in ("cpu", "tensorrt")
