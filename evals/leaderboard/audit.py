"""The grader audit: every prediction checked again by plain math-verify, disagreements listed.

The toolkit's grader (evals.grading) is a cascade of normalisation, its own answer extraction
and math-verify; a bug in any part of it moves scores silently. The audit asks a second,
simpler judge, math-verify's own `parse` + `verify` of the gold against the raw text of the
selected chain, and lists every result where the two verdicts differ. It never changes a
score: a disagreement is a row for a person to look at.

Results of datasets graded by their own exact checker rather than by equivalence with a gold
answer (`countdown`: any expression that reaches the target is right, evals.countdown) are
skipped and counted as such: math-verify would compare the model's expression with the one
reference solution and call every other valid expression wrong.

math-verify can hang on adversarial input, so each check runs in the grader's sandboxed worker
pool (evals.verify_workers.run_guarded) under a SIGALRM deadline, with the pool's outer guard
for C code the signal cannot interrupt.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from evals.leaderboard.mv_check import plain_verify
from evals.leaderboard.runs import Run
from evals.leaderboard.table import markdown_table, write_safe_csv
from evals.rundir import read_json, trace_path
from evals.verify_workers import OUTER_GRACE_S, run_guarded, timed_out

TIMEOUT_S = 5.0
# dataset name -> why plain math-verify cannot judge its results (they are skipped, and counted)
NOT_AUDITED = {"countdown": "graded by the exact expression checker of evals.countdown"}
WORKERS = 4  # threads feeding the pool (run_guarded bounds jobs in flight to its workers)
EXCERPT_CHARS = 160
AUDIT_COLUMNS = [
    "run_dir",
    "row",
    "id",
    "gold",
    "prediction",
    "grader",
    "grade_reason",
    "math_verify",
    "math_verify_reason",
    "source",
    "text_end",
]


def raw_output(run: Run, record: dict[str, Any]) -> tuple[str | None, str]:
    """The selected chain's whole text from the trace, else the record's prediction; and which."""
    path = trace_path(run.path, record["id"])
    try:
        trace = read_json(path)  # a regular file of bounded size: never a FIFO's hang
        selected = trace.get("selected")
        for chain in trace.get("chains") or []:
            if chain.get("id") == selected and isinstance(chain.get("text"), str):
                return chain["text"], "chain"
    except (OSError, ValueError, AttributeError, TypeError):  # no trace, or not a trace
        pass
    prediction = record.get("prediction")
    return (prediction, "prediction") if isinstance(prediction, str) else (None, "none")


def _check(job: tuple[str, str, float]) -> tuple[bool | None, str | None]:
    timeout_s = job[2]
    result = run_guarded(plain_verify, job, timeout_s + OUTER_GRACE_S)
    return result if result is not None else (None, timed_out(timeout_s))


def audit_runs(
    runs: Sequence[Run], rows: dict[str, int] | None = None, timeout_s: float = TIMEOUT_S
) -> tuple[pd.DataFrame, dict[str, int]]:
    """(the disagreements, counts): every result without an error checked again; a row
    whenever the two verdicts differ, also when only one of the two has a verdict.

    `rows` maps a run's path to its leaderboard row number, for the report. Results of the
    datasets in `NOT_AUDITED` are counted as `skipped`, never checked.
    """
    items = []
    skipped = 0
    for run in runs:
        if run.dataset in NOT_AUDITED:
            skipped += sum(1 for r in run.records if not r.get("error"))
            continue
        for record in run.records:
            gold = record.get("answer")
            if record.get("error") or not isinstance(gold, str):
                continue
            text, source = raw_output(run, record)
            items.append((run, record, text, source))
    jobs = [(r["answer"], text, timeout_s) for _, r, text, _ in items if text is not None]
    with ThreadPoolExecutor(WORKERS) as pool:
        verdicts = iter(list(pool.map(_check, jobs)))
    out = []
    counts = {
        "checked": len(items),
        "agree": 0,
        "disagree": 0,
        "undecided": 0,
        "skipped": skipped,
    }
    for run, record, text, source in items:
        second, reason = next(verdicts) if text is not None else (False, "no output")
        first = record.get("correct")
        if first is None and second is None:
            counts["undecided"] += 1  # neither judge has a verdict: nothing to compare
            continue
        if first == second:
            counts["agree"] += 1
            continue
        counts["disagree"] += 1
        out.append(
            {
                "run_dir": str(run.path),
                "row": (rows or {}).get(str(run.path)),
                "id": record["id"],
                "gold": record["answer"],
                "prediction": record.get("prediction"),
                "grader": first,
                "grade_reason": record.get("grade_reason"),
                "math_verify": second,
                "math_verify_reason": reason,
                "source": source,
                "text_end": (text or "")[-EXCERPT_CHARS:].replace("\n", " "),
            }
        )
    return pd.DataFrame(out, columns=AUDIT_COLUMNS), counts


def write_audit(disagreements: pd.DataFrame, counts: dict[str, int], out_dir: Path) -> list[Path]:
    """audit.csv (every disagreement) and audit.md (the counts and the same rows)."""
    csv_path, md_path = out_dir / "audit.csv", out_dir / "audit.md"
    write_safe_csv(disagreements, csv_path)
    shown = disagreements.assign(
        grader=disagreements["grader"].map(_verdict),
        math_verify=disagreements["math_verify"].map(_verdict),
    )
    md_path.write_text(
        "# Grader audit\n\n"
        "Every result re-graded by plain math-verify (`verify(parse(gold), parse(text))` on the "
        "selected chain's raw text, else the prediction). Scores are never changed: each row "
        "below is a result to look at.\n\n"
        f"checked {counts['checked']}, agree {counts['agree']}, "
        f"disagree {counts['disagree']}, neither has a verdict {counts['undecided']}\n\n"
        + _skipped_note(counts.get("skipped", 0))
        + (markdown_table(shown, AUDIT_COLUMNS) if len(shown) else "No disagreements.\n"),
        encoding="utf-8",
        errors="replace",
    )
    return [md_path, csv_path]


def _skipped_note(skipped: int) -> str:
    if not skipped:
        return ""
    why = "; ".join(f"{name}: {reason}" for name, reason in NOT_AUDITED.items())
    return f"skipped {skipped} results that math-verify cannot judge ({why})\n\n"


def _verdict(value: Any) -> str:
    return "none" if value is None or value != value else ("right" if value else "wrong")
