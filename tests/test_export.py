"""``kdbench export`` (issue 12): ONNX and TorchScript students that match PyTorch on a phantom case,
their preprocessing metadata, one-line errors, and the leaderboard's ONNX latency column."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from conftest import tiny_grid
from kdbench.benchmark.grid import GridSpec
from kdbench.benchmark.jobs import CHECKPOINT, build_model, load_cases, load_trained
from kdbench.benchmark.plan import build_plan
from kdbench.benchmark.runner import save_plan
from kdbench.benchmark.store import RunStore
from kdbench.errors import ConfigError
from kdbench.export import example_input, export_job
from runbuild import make_run, table

METADATA_KEYS = {"dims", "input", "output", "classes", "targets", "normalisation", "image_size", "spacing",
                 "spacing_unit", "patch", "inference", "model", "source", "kdbench"}


def trained_run(root, dims: int = 2):
    """A run directory whose student job finished (seeded random weights stand in for training):
    the plan of a tiny grid on the phantom; for ``dims=3`` the student is ``unet3d-s`` on 16×32×32 patches."""
    root.mkdir()
    save_plan(build_plan(GridSpec.model_validate(tiny_grid(methods=["none"], teachers=[]))), root, "cpu")
    plan = json.loads((root / "plan.json").read_text())
    job = next(j for j in plan["jobs"] if j["kind"] == "student")
    if dims == 3:
        job["config"]["model"].update(name="unet3d-s", width=0.25)
        job["config"]["volume"] = {"dims": 3, "patch": [16, 32, 32]}
        job["config"]["dataset"]["options"] = {"cases": 4, "slices": 12}
    (root / "plan.json").write_text(json.dumps(plan))
    (root / job["id"]).mkdir()
    (root / job["id"] / "job.json").write_text(json.dumps({**job, "summary": {}}))
    torch.manual_seed(0)
    torch.save(build_model(job["config"]["model"]).state_dict(), root / job["id"] / CHECKPOINT)
    return root, job


@pytest.mark.parametrize("dims", [2, 3])
def test_onnx_student_matches_pytorch_on_a_phantom_case(tmp_path, dims):
    import onnxruntime

    run, job = trained_run(tmp_path / "run", dims)
    result = export_job(run, job["id"], "onnx", runs=3, warmup=1)
    assert result["max_abs_diff"] <= 1e-4 and result["latency_ms"] > 0 and result["latency_default_threads_ms"] > 0
    # an independent check: another test case, batch 3 through the dynamic batch axis
    config = job["config"]
    model = load_trained(RunStore(run), job["id"], torch.device("cpu"))
    case = load_cases(config, "test")[-1]
    x = torch.cat([example_input(config, case), example_input(config, case)[:1] * 0.5])
    session = onnxruntime.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    exported = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        reference = model(x).numpy()
    assert exported.shape == reference.shape == (3, 3, *x.shape[2:])
    assert np.abs(exported - reference).max() <= 1e-4
    assert x.dim() == dims + 2
    metadata = json.loads((run / "exports" / f"{job['id']}.onnx.json").read_text())["metadata"]
    assert METADATA_KEYS <= set(metadata)
    assert metadata["dims"] == dims and metadata["input"]["channels"] == 1 and metadata["output"]["classes"] == 3
    assert metadata["classes"] == {"0": "background", "1": "organ", "2": "tumour"}
    assert metadata["targets"] == {"organ": [1, 2], "tumour": [2]}
    assert metadata["source"]["job"] == job["id"] and metadata["source"]["method"] == "none"
    assert metadata["patch"] == ([16, 32, 32] if dims == 3 else None)


def test_torchscript_export_and_metadata_beside_a_chosen_path(tmp_path):
    run, job = trained_run(tmp_path / "run")
    out = tmp_path / "deploy" / "student.pt"
    result = export_job(run, job["id"], "torchscript", out=out, runs=3, warmup=3)
    assert result["path"] == str(out) and result["max_abs_diff"] <= 1e-4
    beside = json.loads((tmp_path / "deploy" / "student.pt.json").read_text())
    assert METADATA_KEYS <= set(beside["metadata"]) and beside["format"] == "torchscript"
    assert (run / "exports" / f"{job['id']}.pt.json").is_file()  # the run's record
    module = torch.jit.load(str(out))
    x = example_input(job["config"], load_cases(job["config"], "test")[0])
    with torch.no_grad():
        expected = load_trained(RunStore(run), job["id"], torch.device("cpu"))(x)
        assert torch.allclose(module(x), expected, atol=1e-5)


def test_bad_requests_are_one_line_config_errors(tmp_path, monkeypatch):
    run, job = trained_run(tmp_path / "run")
    plan = json.loads((run / "plan.json").read_text())
    evaluate = next(j["id"] for j in plan["jobs"] if j["kind"] == "evaluate")
    profile = next(j["id"] for j in plan["jobs"] if j["kind"] == "profile")
    cases = [("student-nope-123", "no job 'student-nope-123'"),
             (evaluate, f"not a trained network (exportable: teacher, assistant, student); export the network it "
                        f"evaluates: {job['id']}"),
             (profile, "is a profile job, not a trained network")]
    for job_id, message in cases:
        with pytest.raises(ConfigError, match="^[^\n]*$") as info:
            export_job(run, job_id)
        assert message in str(info.value)
    (run / job["id"] / "job.json").unlink()  # not finished
    with pytest.raises(ConfigError, match=f"job '{job['id']}' has not finished"):
        export_job(run, job["id"])
    with pytest.raises(ConfigError, match="no plan.json"):
        export_job(tmp_path / "empty", job["id"])
    with pytest.raises(ConfigError, match="--format 'tflite'"):
        export_job(run, job["id"], "tflite")
    (run / job["id"] / "job.json").write_text(json.dumps({**job, "summary": {}}))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    with pytest.raises(ConfigError, match=r"needs onnx and onnxruntime.*pip install"):
        export_job(run, job["id"])


def test_leaderboard_shows_onnx_latency_of_exported_rows_only(tmp_path):
    from kdbench.leaderboards.render import EXPORTED_LATENCY, render_markdown

    run = make_run(tmp_path / "run")
    assert EXPORTED_LATENCY not in render_markdown(run)
    (run / "exports").mkdir()
    for job, ms in (("student-kd-f0s0", 1.25), ("teacher-f0s0", 7.5)):
        (run / "exports" / f"{job}.onnx.json").write_text(json.dumps({"job": job, "format": "onnx", "latency_ms": ms}))
    (run / "exports" / "broken.onnx.json").write_text("{not json")
    text = render_markdown(run)
    rows = table(text)
    column = rows[0].index(EXPORTED_LATENCY)
    shown = {r[0]: r[column] for r in rows[1:]}
    assert shown == {"teacher: teacher": "7.50", "none": "–", "kd": "1.25"}
    assert "- **ONNX latency:**" in text
