"""The evaluation record: what the evaluate and quantize stages write, and the results stage reads."""

import pytest

from prunequant.errors import PrunequantError
from prunequant.record import Evaluation
from prunequant.results import evaluation_rows

SCORES = {"validation": {"n": 4, "accuracy": 0.75}, "test": {"n": 4, "accuracy": 0.5}}


def test_a_record_reads_back_as_written_and_leaves_out_what_it_lacks():
    record = Evaluation(variant="pruned-4", model="tiny", layers=4, precision="bnb-nf4", device="cuda", size_mb=None,
                        status="n/a: needs CUDA", reference="pruned-4-fp32")
    data = record.to_json()
    assert list(data) == ["variant", "model", "layers", "precision", "device", "size_mb", "status", "reference"]
    assert Evaluation.from_json(data) == record
    scored = Evaluation(variant="baseline", model="tiny", layers=6, precision="fp32", trained_in="bf16", device="cpu",
                        size_mb=91.8, status="ok", measured_on="cpu", kernels="torch-cpu", eval_batch=64,
                        scores=SCORES)
    assert list(scored.to_json())[-2:] == ["validation", "test"]
    assert Evaluation.from_json(scored.to_json()) == scored


def test_results_rows_come_from_the_record():
    record = Evaluation(variant="baseline", model="tiny", layers=6, precision="fp32", device="cpu", size_mb=91.8,
                        status="ok", kernels="torch-cpu", eval_batch=64, scores=SCORES)
    rows = evaluation_rows(record.to_json())
    assert [(row["split"], row["accuracy"], row["kernels"]) for row in rows] == [
        ("validation", 0.75, "torch-cpu"), ("test", 0.5, "torch-cpu")]
    na = Evaluation(variant="baseline", model="tiny", layers=6, precision="fp8", device="cuda", size_mb=None,
                    status="n/a: needs CUDA")
    assert [(row["split"], row["status"]) for row in evaluation_rows(na.to_json())] == [
        ("validation", "n/a: needs CUDA"), ("test", "n/a: needs CUDA")]


def test_a_record_missing_a_field_is_a_one_line_error():
    data = Evaluation(variant="baseline", model="tiny", layers=6, precision="fp32", device="cpu", size_mb=1.0,
                      status="ok").to_json()
    del data["layers"]
    with pytest.raises(PrunequantError, match="lack layers; rerun `dvc repro`"):
        Evaluation.from_json(data)
