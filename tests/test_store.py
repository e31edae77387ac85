import json
import warnings

import pytest

from harness.results import SCHEMA_VERSION, CorruptRecord, ResultStore, load_frame


def record(key, **extra):
    return {"cell_key": key, "status": "ok", "model": "m", "task": "sst2", "metrics": {"accuracy": 0.5},
            "headline_metric": "accuracy", **extra}


def test_write_is_atomic_and_readable(tmp_path):
    store = ResultStore(tmp_path)
    store.write(record("a"))
    assert store.has("a") and not store.has("b")
    assert store.get("a")["schema_version"] == SCHEMA_VERSION
    assert [p.name for p in (tmp_path / "records").iterdir()] == ["a.json"]  # no temporary files left


def test_failed_cells_are_not_done(tmp_path):
    store = ResultStore(tmp_path)
    store.write(record("a", status="failed", error="boom"))
    assert not store.has("a")
    assert store.records() == [] and len(store.records(include_failed=True)) == 1


def test_corrupt_and_foreign_records_are_reported_and_kept(tmp_path):
    store = ResultStore(tmp_path)
    store.write(record("good"))
    (tmp_path / "records" / "trunc.json").write_text('{"cell_key": "trunc", "sta')
    (tmp_path / "records" / "future.json").write_text(json.dumps({**record("future"), "schema_version": 99}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = [r["cell_key"] for r in store.records()]
    assert keys == ["good"]
    messages = [str(w.message) for w in caught if issubclass(w.category, CorruptRecord)]
    assert any("trunc.json" in m for m in messages) and any("schema version 99" in m for m in messages)
    assert (tmp_path / "records" / "trunc.json").read_text() == '{"cell_key": "trunc", "sta'


def test_missing_fields_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        ResultStore(tmp_path).write({"cell_key": "x"})


def test_frame_and_samples(tmp_path):
    store = ResultStore(tmp_path)
    rel = store.write_samples("a", [{"idx": 0, "pred": 1, "label": 1}])
    store.write(record("a", samples=rel))
    store.write(record("b"))
    frame = load_frame(tmp_path)
    assert sorted(frame["cell_key"]) == ["a", "b"]
    assert store.read_samples(store.get("a")) == [{"idx": 0, "pred": 1, "label": 1}]
    assert load_frame(tmp_path / "empty").empty
