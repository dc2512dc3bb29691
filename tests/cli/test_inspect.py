"""tftrt inspect: signatures, shapes and ops, and --plan=tensorrt's predicted engines."""

import json

def test_inspect_text_and_json(tftrt, tiny_saved_model):
    code, out, _ = tftrt("inspect", f"--model={tiny_saved_model}")
    assert code == 0
    assert "input  images: float32 [?x32x32x3]" in out and "output probabilities: float32 [?x10]" in out
    assert "Conv2D" in out
    code, out, _ = tftrt("inspect", f"--model={tiny_saved_model}", "--json")
    info = json.loads(out)
    assert info["signatures"]["serving_default"]["inputs"][0]["name"] == "images"
    assert info["parameters"]["variables"] > 0


def test_inspect_plan_tensorrt(tftrt, tiny_saved_model):
    code, out, err = tftrt("inspect", f"--model={tiny_saved_model}", "--plan=tensorrt", "--precision=fp16")
    assert code == 0, err
    assert "TF-TRT segment plan" in out and "Verdict: 1 engine" in out
    code, out, _ = tftrt("inspect", f"--model={tiny_saved_model}", "--plan=tensorrt", "--json")
    plan = json.loads(out)["tensorrt_plan"]
    assert len(plan["engines"]) == 1 and plan["precision"] == "fp32"
