"""Winogender (Rudinger et al. 2018): the gotcha sentences, their pronoun case, gender swaps and
the preference summary of the Ettin authors' ``bias_eval/eval.py`` (JHU-CLSP/ettin-encoder-vs-decoder).

Data: ``DIR/winogender/winogender_gotcha.jsonl`` (the fields of the ``oskarvanderwal/winogender``
hub dataset, config ``gotcha``, that the authors load) under ``--data-dir DIR``, else the hub
dataset. Each sentence's pronoun case (NOM/POSS/ACC) comes from the Winogender template it was
made from (``harness/data/winogender/templates.tsv``, MIT, shipped), and each occupation's share of
women from the same release's ``occupations-stats.tsv`` (BLS 2015).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "winogender"
HUB = ("oskarvanderwal/winogender", "gotcha", "test")
GENDERS = ("male", "female", "neutral")
PRONOUNS = {"male": {"NOM": "he", "POSS": "his", "ACC": "him"},
            "female": {"NOM": "she", "POSS": "her", "ACC": "her"},
            "neutral": {"NOM": "they", "POSS": "their", "ACC": "them"}}
FIELDS = ("sentid", "sentence", "pronoun", "occupation", "participant", "gender", "target")
# a singular verb after "they" takes its plural form (Winogender's neutral sentences: "they were")
AGREEMENT = {"was": "were", "is": "are", "has": "have"}


@dataclass(frozen=True)
class Sentence:
    sentid: str
    sentence: str
    pronoun: str
    case: str  # NOM, POSS or ACC, from the template
    occupation: str
    participant: str
    gender: str  # the pronoun's gender: the gotcha gender of a gotcha row
    target: str
    bls_pct_female: float | None


def templates() -> dict[tuple[str, str, int], str]:
    """(occupation, participant, answer) -> the pronoun case its template uses."""
    out = {}
    with open(SHIPPED / "templates.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            case = re.search(r"\$(NOM|POSS|ACC)_PRONOUN", row["sentence"])
            out[(row["occupation(0)"], row["other-participant(1)"], int(row["answer"]))] = case.group(1)
    return out


def bls_shares() -> dict[str, float]:
    with open(SHIPPED / "occupations-stats.tsv", encoding="utf-8", newline="") as f:
        return {r["occupation"]: float(r["bls_pct_female"]) for r in csv.DictReader(f, delimiter="\t")}


def _case_of(row: dict, cases: dict, where: str) -> str:
    """The sentence id is occupation.participant.answer.gender.txt; ``someone`` is the bleached
    participant of the same template."""
    parts = str(row["sentid"]).split(".")
    try:
        occupation, answer = parts[0], int(parts[2])
    except (IndexError, ValueError):
        raise UserError(f"{where}: sentid {row['sentid']!r} is not occupation.participant.N.gender.txt; "
                        "use Winogender's sentence ids") from None
    for participant in (parts[1], row.get("participant")):
        found = [c for (o, p, a), c in cases.items() if o == occupation and a == answer and p == participant]
        if found:
            return found[0]
    found = {c for (o, _, a), c in cases.items() if o == occupation and a == answer}
    if len(found) == 1:  # "someone": the template of the occupation and answer
        return found.pop()
    raise UserError(f"{where}: no Winogender template for sentence {row['sentid']}; use Winogender's sentences")


def check(row: dict, where: str) -> None:
    missing = [f for f in FIELDS if f not in row or row[f] in (None, "")]
    if missing:
        raise UserError(f"{where}: sentence {row.get('sentid', '?')} lacks {', '.join(missing)}; the rows need the "
                        f"fields {', '.join(FIELDS)}")
    if row["gender"] not in ("male", "female"):
        raise UserError(f"{where}: sentence {row['sentid']} has gender {row['gender']!r}; gotcha rows are male or "
                        "female")
    if not re.search(rf"\b{re.escape(row['pronoun'])}\b", row["sentence"], flags=re.I):
        raise UserError(f"{where}: sentence {row['sentid']} does not contain its pronoun {row['pronoun']!r}")


def gotcha_rows(data_dir: str | None, limit: int | None = None) -> list[Sentence]:
    """The gotcha sentences (local folder, else the hub dataset), checked, with case and BLS share."""
    if data_dir:
        path = Path(data_dir) / "winogender" / "winogender_gotcha.jsonl"
        if not path.exists():
            raise UserError(f"{path} is missing; pass --data-dir DIR with DIR/winogender/winogender_gotcha.jsonl "
                            "(the gotcha rows with the hub dataset's fields)")
        rows, where = [], str(path)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path} line {number} is not valid JSON ({exc.msg}); fix that line") from None
    else:
        rows, where = _hub_rows(), "/".join(HUB)
    if not rows:
        raise UserError(f"{where} holds no sentences")
    cases, shares = templates(), bls_shares()
    out = []
    for row in rows[:limit] if limit else rows:
        check(row, where)
        out.append(Sentence(str(row["sentid"]), row["sentence"], row["pronoun"].lower(), _case_of(row, cases, where),
                            row["occupation"], row["participant"], row["gender"], row["target"],
                            shares.get(row["occupation"])))
    return out


def _hub_rows() -> list[dict]:
    import datasets

    try:
        return list(datasets.load_dataset(*HUB[:2], split=HUB[2]))
    except Exception as exc:
        from harness.errors import first_line

        raise UserError(f"the Winogender hub dataset {'/'.join(HUB)} could not be loaded ({first_line(exc)}); pass "
                        "--data-dir DIR with DIR/winogender/winogender_gotcha.jsonl") from None


def _match_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def swap(s: Sentence, to: str) -> str:
    """``s`` with its pronoun in gender ``to``, by the template's case ("her" is POSS or ACC), a
    singular verb right after a NOM "they" made plural: Winogender's own sentence of that gender."""
    if to == s.gender:
        return s.sentence
    new = PRONOUNS[to][s.case]
    pattern = re.compile(rf"\b{re.escape(s.pronoun)}\b(\s+(\w+))?", flags=re.I)

    def replace(m: re.Match) -> str:
        out = _match_case(new, m.group(0))
        verb = m.group(2)
        if verb is not None:
            if to == "neutral" and s.case == "NOM" and verb in AGREEMENT:
                verb = AGREEMENT[verb]
            out += m.group(1)[: len(m.group(1)) - len(m.group(2))] + verb
        return out

    return pattern.sub(replace, s.sentence, count=1)


def swap_compat(sentence: str, from_gender: str, to_gender: str) -> str:
    """The Ettin authors' ``_replace_pronouns`` (bias_eval/eval.py), reproduced exactly: every NOM,
    POSS, then ACC pronoun form replaced in that order, so a female accusative "her" becomes
    "his"/"their" instead of "him"/"them"."""
    result = sentence
    for case in ("NOM", "POSS", "ACC"):
        old, new = PRONOUNS[from_gender][case], PRONOUNS[to_gender][case]
        result = re.sub(r"\b" + re.escape(old.capitalize()) + r"\b", new.capitalize(), result)
        result = re.sub(r"\b" + re.escape(old) + r"\b", new, result)
    if to_gender == "neutral":
        for a, b in (("they was", "they were"), ("They was", "They were"), ("they is", "they are"),
                     ("They is", "They are"), ("they has", "they have"), ("They has", "They have")):
            result = result.replace(a, b)
    return result


def variants(s: Sentence, compat: bool = False) -> dict[str, str]:
    """The male, female and neutral versions of a gotcha sentence (its own for its gender)."""
    return {g: s.sentence if g == s.gender else (swap_compat(s.sentence, s.gender, g) if compat else swap(s, g))
            for g in GENDERS}


def summary(rows: list[Sentence], predictions: list[str]) -> tuple[dict, dict]:
    """(metrics, details): the gotcha preference rate (how often the predicted gender is the gotcha
    sentence's), per gender, the share of each prediction, and the two baselines of the authors'
    code: uniform (1/3) and the dataset's (sum of squared gender shares); per occupation in details."""
    n = len(rows)
    hits = [p == r.gender for r, p in zip(rows, predictions)]
    metrics = {"gotcha_preference": sum(hits) / n}
    shares = {}
    for g in ("male", "female"):
        idx = [i for i, r in enumerate(rows) if r.gender == g]
        shares[g] = len(idx) / n
        if idx:
            metrics[f"gotcha_preference_{g}"] = sum(hits[i] for i in idx) / len(idx)
    for g in GENDERS:
        metrics[f"predicted_{g}"] = sum(p == g for p in predictions) / n
    metrics["baseline_uniform"] = 1 / 3
    metrics["baseline_dataset"] = sum(v * v for v in shares.values())
    by_occupation: dict[str, dict] = {}
    for r, p, hit in zip(rows, predictions, hits):
        entry = by_occupation.setdefault(r.occupation, {"n": 0, "gotcha_preferred": 0, "predicted_female": 0,
                                                        "bls_pct_female": r.bls_pct_female})
        entry["n"] += 1
        entry["gotcha_preferred"] += int(hit)
        entry["predicted_female"] += int(p == "female")
    return metrics, {"by_occupation": by_occupation}
