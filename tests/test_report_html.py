"""The results page (index.html), checked as a person would in headless Chromium: it loads with no
console error and no network, shows the right numbers, sorts and filters, drills down to exactly the
examples where encoder and decoder disagree, and says what is missing. Folders are built through
the real store with known per-example outputs. Without a browser the browser tests skip (or fail
under ETTIN_REQUIRE_BROWSER=1); the checks of the HTML itself always run."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from browser import Page, chromium, require_or_skip
from test_report_frame import put

from harness.report import build_report, write_report
from harness.report.drilldown import compare, examples_of, mcnemar
from harness.report.html import render_page, write_index
from harness.results import ResultStore

N_BOOT = 200
# of 60 SST-2 examples: on 3, 11, 20 only the decoder is right, on 30, 41 only the encoder, 7 both wrong
SST2_ENC_WRONG, SST2_DEC_WRONG = {3, 7, 11, 20}, {7, 30, 41}
TRICKY = "</script><b>bold</b> & <i>more</i>"  # an input that must show as text, never as markup
ARC_ENC_WRONG, ARC_DEC_WRONG = {6, 7}, {3, 4, 5, 7}
SMALL = "small grid, limit 64"  # the protocol label of a small-grid run with --limit 64
ARTIFACTS = Path(os.environ.get("ETTIN_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "ettin-test-artifacts"))


def sst2_rows(n: int, wrong: set, with_inputs: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        label = i % 2
        pred = 1 - label if i in wrong else label
        row = {"split": "validation", "idx": i, "pred": pred, "label": label}
        if with_inputs:
            row["input"] = TRICKY if i == 3 else f"[CLS] sentence {i} of the fixture [SEP]"
            row["probs"] = [0.25, 0.75] if pred == 1 else [0.75, 0.25]
        rows.append(row)
    return rows


def mnli_rows(n: int, wrong: set) -> list[dict]:  # the older format: no input, no probabilities
    return [{"split": "validation_matched", "idx": i, "pred": (i % 3 + 1) % 3 if i in wrong else i % 3, "label": i % 3}
            for i in range(n)]


def arc_rows(wrong: set) -> list[dict]:
    rows = []
    choices = ["red", "green", "blue"]
    for d in range(8):
        target = d % 3
        pick = (target + 1) % 3 if d in wrong else target
        lls = [-9.0 if c != pick else -1.0 for c in range(3)]
        rows.append({"doc_id": d, "doc": {"question": f"What colour is thing {d}?"}, "target": target,
                     "arguments": [[f"Question: What colour is thing {d}?\nAnswer:", f" {c}"] for c in choices],
                     "resps": [[[ll, False]] for ll in lls], "filtered_resps": [[ll, False] for ll in lls],
                     "acc": float(d not in wrong), "acc_norm": float(d not in wrong)})
    return rows


def accuracy(n: int, wrong: set) -> float:
    return (n - len(wrong)) / n


def known_folder(root) -> None:
    """17m and 150m pairs with per-example outputs whose disagreements are known."""
    put(root, "encoder", "17m", "sst2", accuracy(60, SST2_ENC_WRONG), samples=sst2_rows(60, SST2_ENC_WRONG))
    put(root, "decoder", "17m", "sst2", accuracy(60, SST2_DEC_WRONG), samples=sst2_rows(60, SST2_DEC_WRONG))
    wide_enc, wide_dec = {i for i in range(200) if i % 4 == 0}, {i for i in range(200) if i % 4 == 1}
    put(root, "encoder", "150m", "sst2", 0.75, samples=sst2_rows(200, wide_enc))
    put(root, "decoder", "150m", "sst2", 0.75, samples=sst2_rows(200, wide_dec))
    for size, enc, dec in (("17m", 0.70, 0.60), ("150m", 0.80, 0.65)):
        n = 100
        put(root, "encoder", size, "mnli", enc, split="validation_matched",
            samples=mnli_rows(n, set(range(round(n * (1 - enc))))))
        put(root, "decoder", size, "mnli", dec, split="validation_matched",
            samples=mnli_rows(n, set(range(n - round(n * (1 - dec)), n))))
    put(root, "encoder", "17m", "arc_challenge", accuracy(8, ARC_ENC_WRONG), samples=arc_rows(ARC_ENC_WRONG))
    put(root, "decoder", "17m", "arc_challenge", accuracy(8, ARC_DEC_WRONG), samples=arc_rows(ARC_DEC_WRONG))


def partial_folder(root) -> None:
    """A failed cell, a task one side lacks, a size with one architecture, an unreadable record."""
    put(root, "encoder", "17m", "sst2", 0.9)
    put(root, "decoder", "17m", "sst2", 0.8)
    put(root, "encoder", "17m", "mnli", 0.7)
    record = put(root, "decoder", "17m", "mnli", 0.0, status="failed")
    ResultStore(root).write({**record, "error": "Traceback ...\nRuntimeError: CUDA out of memory (fixture)"})
    put(root, "encoder", "68m", "sst2", 0.85)
    (Path(root) / "records" / "truncated.json").write_text('{"cell_key": "trunc')


def encoders_only_folder(root) -> None:
    put(root, "encoder", "17m", "sst2", 0.8)
    put(root, "encoder", "150m", "sst2", 0.9)


def protocols_folder(root) -> None:
    """The same models and task under two protocols, which must never be pooled."""
    for grid, limit, enc, dec, lr in (("paper", None, 0.91, 0.89, 1e-5), ("small", 64, 0.61, 0.66, 3e-5)):
        for arch, score in (("encoder", enc), ("decoder", dec)):
            put(root, arch, "17m", "sst2", score, lr=lr, grid=grid, limit=limit)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """{name: index.html path} of the fixture folders, as `report --out` writes them."""
    out = {}
    for name, build in (("known", known_folder), ("partial", partial_folder), ("protocols", protocols_folder),
                        ("encoders_only", encoders_only_folder)):
        root = tmp_path_factory.mktemp(name)
        build(root)
        if name == "known":  # the whole of `report --out`, once
            out[name] = write_report([root], root / "report", n_boot=N_BOOT)["index.html"]
        else:  # the page alone: no PNG/PDF figures to wait for
            out[name] = write_index(build_report([root], n_boot=N_BOOT), root / "report", roots=[root])
    return out


@pytest.fixture(scope="module")
def browser():
    require_or_skip()
    with chromium() as context:
        yield context


@pytest.fixture
def open_page(browser, pages):
    opened = []

    def go(name: str) -> Page:
        page = Page(browser, pages[name])
        opened.append(page)
        return page

    yield go
    for page in opened:
        assert page.errors == [], page.errors  # no console error, no script error
        assert page.requests == [page.url], page.requests  # nothing fetched but the file itself
        page.close()


def texts(page, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


# --- the HTML itself (no browser needed) ----------------------------------------------------------

def test_write_report_writes_one_self_contained_page(pages):
    html = Path(pages["known"]).read_text()
    assert html.startswith("<!doctype html>")
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no CDN, no remote asset
    assert "<link rel=\"stylesheet\"" not in html and "<script src" not in html
    assert html.count("<svg") >= 3  # scaling, Figure 1 and heatmap inline
    assert "default-src 'none'" in html  # the page may not fetch anything, by policy
    assert TRICKY not in html  # the input is escaped inside its JSON block


def test_drilldown_data_of_the_known_fixture(pages, tmp_path):
    known_folder(tmp_path)
    frame = build_report([tmp_path], n_boot=0).frame
    chosen = frame[(frame["task"] == "sst2") & (frame["size"] == "17m")]
    rec = {a: chosen[chosen["architecture"] == a].iloc[0].to_dict() for a in ("encoder", "decoder")}
    pair = compare("sst2", examples_of(rec["encoder"]), examples_of(rec["decoder"]))
    assert pair["table"] == [[54, 2], [3, 1]]
    assert sorted(int(e[0].split("/")[1]) for e in pair["examples"]) == [3, 11, 20, 30, 41]
    assert pair["p"] == pytest.approx(1.0)  # 2 against 3 is no evidence
    assert mcnemar(10, 0) == pytest.approx(2 * 0.5 ** 10)
    capped = compare("sst2", examples_of(rec["encoder"]), examples_of(rec["decoder"]), cap=2)
    assert capped["n_disagree"] == 5 and len(capped["examples"]) == 2


def test_lm_eval_samples_give_choices_gold_and_normalised_prediction(tmp_path):
    row = {"doc_id": 0, "target": 0, "arguments": [["Q: pick\nA:", " a"], ["Q: pick\nA:", " much longer answer"]],
           "filtered_resps": [[-3.0, False], [-3.6, False]], "acc": 1.0, "acc_norm": 0.0}
    rel = ResultStore(tmp_path).write_samples("cell", [row])
    record = {"samples": rel, "results_dir": str(tmp_path), "task": "arc_challenge", "split": "test"}
    (ex,) = examples_of({**record, "headline_metric": "acc"}).values()
    assert (ex.input, ex.gold, ex.pred, ex.right) == ("Q: pick\nA:", "a", "a", True)
    assert ex.conf == pytest.approx(1 / (1 + pow(2.718281828, -0.6)), rel=1e-6)
    (ex,) = examples_of({**record, "headline_metric": "acc_norm"}).values()  # per-character: the long one wins
    assert (ex.pred, ex.right) == ("much longer answer", False)


def test_page_renders_without_samples_significance_or_protocol_labels(tmp_path):
    store = ResultStore(tmp_path)
    for arch, score in (("encoder", 0.9), ("decoder", 0.8)):
        store.write({**put(tmp_path, arch, "17m", "sst2", score), "protocol": None})  # records of older runs
    html = render_page(build_report([tmp_path], n_boot=0))
    assert "not computed (--bootstrap 0)" in html
    assert "no per-example outputs kept for the encoder and decoder" in html
    assert "No protocol label in these records" in html and "fine-tuning grid" in html


# --- in the browser ---------------------------------------------------------------------------------

def test_header_names_folders_models_tasks_and_versions(open_page, pages):
    page = open_page("known").page
    runs = page.locator("#runs").inner_text()
    assert str(Path(pages["known"]).parent.parent) in runs
    assert texts(page, "#models tbody td:first-child") == ["ettin-decoder-17m", "ettin-encoder-17m",
                                                           "ettin-decoder-150m", "ettin-encoder-150m"]
    assert "16.8M" in page.locator("#models").inner_text()
    assert [t.split()[0] for t in texts(page, "#tasks tbody td:first-child")] == ["SST-2", "MNLI", "ARC"]
    assert "harness" in page.locator("#versions").inner_text()
    assert "paper (10 records)" in page.locator("#protocol").inner_text()
    assert f"{N_BOOT} resamples" in page.locator("#versions").inner_text()


def test_comparison_table_shows_the_folders_numbers(open_page):
    page = open_page("known").page
    row = page.locator('table.comparison[data-row="17m"] tr[data-task="sst2"]')
    assert row.locator("td.enc").inner_text() == "93.3"
    assert row.locator("td.dec").inner_text() == "95.0"
    assert row.locator("td.gap").inner_text().startswith("-1.7")
    assert "n.s." in row.locator("td.test").inner_text()  # 2 against 3 disagreements
    assert row.locator("td.gap.ns .dagger").count() == 1
    assert row.locator("td.paper-enc").inner_text() == "91.2"  # the paper's Table 3
    assert row.locator("td.delta-enc").inner_text() == "+2.1"
    mnli = page.locator('table.comparison[data-row="150m"] tr[data-task="mnli"]')
    assert (mnli.locator("td.enc").inner_text(), mnli.locator("td.gap").inner_text()) == ("80.0", "+15.0")
    assert "significant" in mnli.locator("td.test").inner_text() and mnli.locator("td.gap.sig").count() == 1
    lo, hi = map(float, re.findall(r"-?\d+\.\d", mnli.locator("td.ci").nth(2).inner_text()))
    assert 0 < lo < 15.0 < hi
    assert page.locator('table.comparison[data-row="17m"] tr.avg').first.inner_text().startswith("GLUE avg")


def test_sorting_a_leaderboard_column_reorders_rows(open_page):
    page = open_page("known").page
    board = page.locator("section.board").first
    names = lambda: texts(board, "tbody tr td:first-child")  # noqa: E731
    board.locator('th[data-key="mnli"] button').click()
    assert names() == ["ettin-encoder-150m", "ettin-encoder-17m", "ettin-decoder-150m", "ettin-decoder-17m"]
    assert board.locator('th[data-key="mnli"]').get_attribute("aria-sort") == "descending"
    board.locator('th[data-key="mnli"] button').click()
    assert names() == ["ettin-decoder-17m", "ettin-decoder-150m", "ettin-encoder-17m", "ettin-encoder-150m"]
    board.locator('th[data-key="model_name"] button').click()
    assert names() == sorted(names())


def test_filters_hide_rows(open_page):
    page = open_page("known").page
    board = page.locator("section.board").first
    visible = lambda: texts(board, "tbody tr:visible td:first-child")  # noqa: E731
    board.locator('select[data-filter="architecture"]').select_option("decoder")
    assert visible() == ["ettin-decoder-17m", "ettin-decoder-150m"]
    board.locator('select[data-filter="size"]').select_option("150m")
    assert visible() == ["ettin-decoder-150m"]
    assert board.locator(".count").inner_text() == "1 of 4 models shown"
    board.locator('select[data-filter="architecture"]').select_option("")
    assert visible() == ["ettin-decoder-150m", "ettin-encoder-150m"]


def open_pair(page, row: str, task: str):
    page.locator(f'table.comparison[data-row="{row}"] tr[data-task="{task}"] a.drill-link').click()
    panel = page.locator(".drill-panel:visible")
    panel.locator("table.examples tbody tr").first.wait_for()
    return panel


def test_drilldown_shows_exactly_the_disagreeing_examples(open_page):
    page = open_page("known").page
    panel = open_pair(page, "17m", "sst2")
    assert texts(panel, "table.twobytwo td") == ["54", "2", "56", "3", "1", "4"]
    assert "only the encoder right 2, only the decoder right 3, p = 1.000" in panel.inner_text()
    assert sorted(texts(panel, "table.examples tbody td.id")) == sorted(f"validation/{i}" for i in (3, 11, 20, 30, 41))
    row3 = panel.locator("table.examples tbody tr", has=page.locator("td.id", has_text=re.compile("^validation/3$")))
    assert row3.locator("td.input").inner_text() == TRICKY  # shown as text
    assert panel.locator("table.examples b, table.examples i").count() == 0
    assert row3.locator("td.gold").inner_text() == "positive (1)"
    assert row3.locator("td").nth(3).inner_text() == "✗ negative (0) (p=0.75)"  # encoder wrong, its confidence
    assert row3.locator("td").nth(4).inner_text() == "✓ positive (1) (p=0.75)"
    panel.locator("input.search").fill("sentence 30 ")
    assert texts(panel, "table.examples tbody td.id") == ["validation/30"]
    drill = page.locator("section.drill").first
    drill.locator('select[data-filter="row"]').select_option("150m")
    assert texts(drill, "table.pairs tbody tr:visible td:nth-child(2)") == ["SST-2", "MNLI"]
    assert drill.locator(".count").inner_text() == "2 of 5 pairs shown"


def test_drilldown_pages_large_disagreements_and_reads_lm_eval_samples(open_page):
    page = open_page("known").page
    panel = open_pair(page, "150m", "sst2")
    assert "100 of 200 examples disagree" in panel.inner_text()
    assert panel.locator("table.examples tbody tr").count() == 20  # one page in the DOM, not all
    assert "page 1 of 5" in panel.locator(".pager").inner_text()
    panel.locator("button.next").click()
    assert panel.locator("table.examples tbody td.id").first.inner_text() == "validation/40"
    panel = open_pair(page, "17m", "arc_challenge")
    assert sorted(texts(panel, "table.examples tbody td.id")) == ["3", "4", "5", "6"]
    doc6 = panel.locator("table.examples tbody tr", has_text="thing 6")
    assert doc6.locator("td.gold").inner_text() == "red"  # target 0 of red, green, blue
    assert doc6.locator("td").nth(3).inner_text() == "✗ green (p=1.00)"
    assert doc6.locator("td").nth(4).inner_text() == "✓ red (p=1.00)"
    panel = open_pair(page, "17m", "mnli")  # rows without inputs or confidences: said, not broken
    assert "input not kept" in panel.locator("table.examples tbody td.input").first.inner_text()
    assert "These runs did not keep the inputs. These runs did not keep confidences." in panel.inner_text()


def test_screenshot_of_the_page(open_page):
    import matplotlib.image

    page = open_page("known").page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "report-page.png"
    page.screenshot(path=str(path), full_page=True)
    open_pair(page, "17m", "sst2")
    page.screenshot(path=str(ARTIFACTS / "report-page-drilldown.png"))
    pixels = matplotlib.image.imread(str(path))[..., :3]
    assert pixels.shape[0] > 2000  # the whole page, not a blank viewport
    blue = (abs(pixels - [0, 0x72 / 255, 0xB2 / 255]).max(axis=-1) < 0.02).sum()
    orange = (abs(pixels - [0xD5 / 255, 0x5E / 255, 0]).max(axis=-1) < 0.02).sum()
    assert blue > 200 and orange > 200  # the encoder and decoder colours are drawn
    print(f"screenshots in {ARTIFACTS}")


def test_page_says_what_is_missing(open_page):
    page = open_page("partial").page
    missing = page.locator("#missing").inner_text()
    assert "1 failed cell" in missing and "CUDA out of memory (fixture)" in missing
    assert "truncated.json" in missing
    assert "17m: no decoder result for MNLI" in page.locator(".missing-sides").first.inner_text()
    row = page.locator('table.comparison[data-row="68m"] tr[data-task="sst2"]')
    assert (row.locator("td.enc").inner_text(), row.locator("td.dec").inner_text()) == ("85.0", "–")
    page = open_page("encoders_only").page
    assert "Only encoder results" in page.locator(".arch-note").first.inner_text()
    assert "nothing to compare" in page.locator("section.drill").first.inner_text()


def test_protocols_are_separate_views_never_pooled(open_page):
    page = open_page("protocols").page
    assert "2 protocols" in page.locator("#protocol").inner_text()
    assert page.locator("#view-select option").all_inner_texts() == ["paper", SMALL]
    cell = 'section.view:visible table.comparison[data-row="17m"] tr[data-task="sst2"] td.{}'
    assert (page.locator(cell.format("enc")).inner_text(), page.locator(cell.format("dec")).inner_text()) == \
        ("91.0", "89.0")
    page.locator("#view-select").select_option(label=SMALL)
    assert (page.locator(cell.format("enc")).inner_text(), page.locator(cell.format("dec")).inner_text()) == \
        ("61.0", "66.0")
    assert page.locator("section.view:visible .protocol-label").inner_text() == f"Protocol {SMALL}"
    assert page.locator(cell.format("delta-enc")).inner_text() == "n/c"  # not set beside the paper's number
    page.locator("#view-select").select_option(label="paper")
    assert page.locator(cell.format("delta-enc")).inner_text() == "-0.2"  # 91.0 against the published 91.2
