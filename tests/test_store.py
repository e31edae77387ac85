import json
import os
import stat

import pytest
from test_report_frame import put

from harness.errors import UserError
from harness.results import SCHEMA_VERSION, ResultStore, load_frame, writable_folder


def test_write_is_atomic_and_readable(tmp_path):
    store = ResultStore(tmp_path)
    key = put(tmp_path, "encoder", "17m", "sst2", 0.5)["cell_key"]
    assert store.has(key) and not store.has("other")
    assert store.get(key)["schema_version"] == SCHEMA_VERSION
    assert [p.name for p in (tmp_path / "records").iterdir()] == [f"{key}.json"]  # no temporary files left


def test_failed_cells_are_not_done(tmp_path):
    store = ResultStore(tmp_path)
    key = put(tmp_path, "encoder", "17m", "sst2", 0.5, status="failed")["cell_key"]
    assert not store.has(key)
    assert store.records() == [] and len(store.records(include_failed=True)) == 1


def test_corrupt_and_foreign_records_are_reported_once_as_one_line_and_kept(tmp_path, capsys):
    store = ResultStore(tmp_path)
    good = put(tmp_path, "encoder", "17m", "sst2", 0.5)
    (tmp_path / "records" / "trunc.json").write_text('{"cell_key": "trunc", "sta')
    (tmp_path / "records" / "future.json").write_text(json.dumps({**good, "schema_version": 99}))
    keys = [r["cell_key"] for r in store.records()]
    assert [r["cell_key"] for r in store.records()] == keys == [good["cell_key"]]  # read twice: noticed once
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("ettin-eval: skipping") for line in err)
    assert any("trunc.json" in m for m in err) and any("schema version 99" in m for m in err)
    assert (tmp_path / "records" / "trunc.json").read_text() == '{"cell_key": "trunc", "sta'


def test_missing_fields_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        ResultStore(tmp_path).write({"cell_key": "x"})


def test_frame_and_samples(tmp_path):
    store = ResultStore(tmp_path)
    a = put(tmp_path, "encoder", "17m", "sst2", 0.5, samples=[{"idx": 0, "pred": 1, "label": 1}])
    b = put(tmp_path, "decoder", "17m", "sst2", 0.5)
    frame = load_frame(tmp_path)
    assert sorted(frame["cell_key"]) == sorted([a["cell_key"], b["cell_key"]])
    assert store.read_samples(store.get(a["cell_key"])) == [{"idx": 0, "pred": 1, "label": 1}]
    (tmp_path / "empty").mkdir()
    assert load_frame(tmp_path / "empty").empty
    with pytest.raises(UserError, match="does not exist"):
        load_frame(tmp_path / "missing")


def test_files_follow_the_umask_so_shared_folders_stay_readable(tmp_path, monkeypatch):
    import harness.results as results

    monkeypatch.setattr(results, "_UMASK", 0o022)  # the umask the process started with
    store = ResultStore(tmp_path)
    key = put(tmp_path, "encoder", "17m", "sst2", 0.5, samples=[{"idx": 0}])["cell_key"]
    for path in (store.record_path(key), tmp_path / "samples" / f"{key}.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_write_never_changes_the_process_umask(tmp_path, monkeypatch):
    # umask(0) then back, per write, leaves a window where another thread creates world-writable files
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    put(tmp_path, "encoder", "17m", "sst2", 0.5, samples=[{"idx": 0}])
    assert calls == []


def test_output_folder_problems_are_user_errors(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="lies under the file"):
        writable_folder(tmp_path / "file" / "sub")
    with pytest.raises(UserError, match="is a file"):
        writable_folder(tmp_path / "file")
    # root writes anywhere, so the kernel's refusal is stood in for by the error it raises
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(UserError, match="cannot write to --output-path .*Permission denied"):
        writable_folder(tmp_path / "results")


def test_a_failed_record_never_replaces_a_finished_one(tmp_path):
    store = ResultStore(tmp_path)
    ok = store.get(put(tmp_path, "encoder", "17m", "sst2", 0.5)["cell_key"])
    assert store.write({**ok, "status": "failed", "error": "RuntimeError: late"}) is None
    assert store.get(ok["cell_key"]) == ok


def test_a_missing_truncated_or_deep_file_is_a_notice_not_a_crash(tmp_path, capsys):
    from harness.report import build_report

    store = ResultStore(tmp_path)
    rows = [{"split": "validation", "idx": i, "pred": i % 2, "label": 0} for i in range(40)]
    enc = put(tmp_path, "encoder", "17m", "sst2", 0.5, samples=rows)
    dec = put(tmp_path, "decoder", "17m", "sst2", 0.5, samples=rows)
    (tmp_path / enc["samples"]).unlink()
    (tmp_path / dec["samples"]).write_text('{"split": "validation", "idx": 0, "pr')
    (tmp_path / "records" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert store.read_samples(store.get(enc["cell_key"])) == []
    report = build_report([tmp_path], n_boot=50)
    assert sorted(report.frame["cell_key"]) == sorted([enc["cell_key"], dec["cell_key"]])
    err = capsys.readouterr().err.splitlines()
    assert any("deep.json" in line and "RecursionError" in line for line in err)
    assert any(enc["samples"].split("/")[-1] in line for line in err)


@pytest.mark.parametrize("value", ["two", 10**9, 1.5, True, 0])
def test_num_labels_must_be_a_sane_whole_number(value, tmp_path):
    from harness.tasks import load_tasks

    (tmp_path / "mine.yaml").write_text(
        "adapter: classification\ntask: mine\ndataset_path: x\ntrain_split: train\neval_splits: [validation]\n"
        f"text_fields: [sentence]\nlabel_type: classification\nmetrics: [accuracy]\nnum_labels: {value}\n")
    with pytest.raises(UserError, match="num_labels must be a whole number from 2 to"):
        load_tasks([str(tmp_path)])


def test_more_masks_than_a_row_holds_is_an_error_not_a_negative_index():
    from harness.lm.encoder import mask_append_row

    assert mask_append_row([1, 5, 6, 7], 9, 2, 3, max_length=6) == ([1, 7, 9, 9, 9, 2], 2)
    with pytest.raises(UserError, match="--num-masks 5 leaves no room"):
        mask_append_row([1, 5, 6, 7], 9, 2, 5, max_length=6)
