"""Grading agreement: our `is_equivalent` vs plain math-verify on the category table.

Each row of tests/data/grading_categories.jsonl is a prediction (a bare answer or a text holding
one), a gold answer and the expected verdict. Plain math-verify is what a user would write:
`verify(parse(gold), parse(prediction))` with the defaults. Agreement is the share of rows whose
verdict equals the expected one (None, ungradable in time, counts as a disagreement).

    .venv/bin/python benchmarks/grading_agreement.py [--table PATH] [--misses]

Prints a Markdown table, per category and overall, ours and math-verify's side by side, and
exits with status 1 when ours is below math-verify in any category (the categories behind are
named on stderr), so a test or CI step can call it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TABLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "grading_categories.jsonl"


def load_table(path: Path = TABLE) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plain_math_verify(prediction: str, gold: str, timeout_s: int | None = 5) -> bool:
    """math-verify as documented: parse both sides with the default extraction, then verify.

    `timeout_s=None` drops math-verify's SIGALRM timeouts (for callers that own the alarm, such
    as pytest-timeout); the verdicts are the same on inputs that do not hang.
    """
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    try:
        gold_parsed = parse(gold, parsing_timeout=timeout_s)  # type: ignore[arg-type]
        pred_parsed = parse(prediction, parsing_timeout=timeout_s)  # type: ignore[arg-type]
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s))
    except Exception:
        return False


def ours(prediction: str, gold: str) -> bool | None:
    from evals.grading import is_equivalent

    return is_equivalent(prediction, gold)


def agreement(rows: list[dict], mv_timeout_s: int | None = 5) -> dict[str, dict[str, list[bool]]]:
    """Per category (and "overall"), per grader: whether each row's verdict was the expected one."""
    hits: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        expected = row["equivalent"]
        verdicts = {
            "ours": ours(row["prediction"], row["gold"]),
            "math_verify": plain_math_verify(row["prediction"], row["gold"], mv_timeout_s),
        }
        for name, verdict in verdicts.items():
            hit = verdict is expected
            hits[row["category"]][name].append(hit)
            hits["overall"][name].append(hit)
    return hits


def markdown(hits: dict[str, dict[str, list[bool]]]) -> str:
    lines = ["| category | rows | ours | math-verify |", "| --- | ---: | ---: | ---: |"]
    order = sorted(k for k in hits if k != "overall") + ["overall"]
    for category in order:
        ours_hits, mv_hits = hits[category]["ours"], hits[category]["math_verify"]
        lines.append(
            f"| {category} | {len(ours_hits)} | {sum(ours_hits) / len(ours_hits):.3f} "
            f"| {sum(mv_hits) / len(mv_hits):.3f} |"
        )
    return "\n".join(lines)


def behind(hits: dict[str, dict[str, list[bool]]]) -> dict[str, tuple[float, float]]:
    """The categories where ours agrees less often than plain math-verify: (ours, math-verify)."""
    out = {}
    for category, graders in hits.items():
        ours_rate = sum(graders["ours"]) / len(graders["ours"])
        mv_rate = sum(graders["math_verify"]) / len(graders["math_verify"])
        if ours_rate < mv_rate:
            out[category] = (ours_rate, mv_rate)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--misses", action="store_true", help="list the rows each grader misses")
    args = parser.parse_args()
    from benchmarks.settings import print_settings
    from evals.grading import grader_info, shutdown

    rows = load_table(args.table)
    print_settings(
        {
            "table": args.table,
            "rows": len(rows),
            "ours": grader_info(),
            "plain_math_verify": "verify(parse(gold), parse(prediction)), 5 s timeouts",
        }
    )
    try:
        hits = agreement(rows)
    finally:
        shutdown()
    print(markdown(hits))
    if args.misses:
        for name in ("ours", "math_verify"):
            print(f"\n{name} misses:")
            by_category: dict[str, int] = defaultdict(int)
            for row in rows:
                i = by_category[row["category"]]
                by_category[row["category"]] += 1
                if not hits[row["category"]][name][i]:
                    print(f"  [{row['category']}] {row['prediction']!r} vs {row['gold']!r}")
    lagging = behind(hits)
    for category, (ours_rate, mv_rate) in sorted(lagging.items()):
        print(f"below math-verify: {category} ({ours_rate:.3f} < {mv_rate:.3f})", file=sys.stderr)
    return 1 if lagging else 0


if __name__ == "__main__":
    sys.exit(main())
