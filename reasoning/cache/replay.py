"""What a replay reproduces. Running the recorded config again with `cache.mode=replay
cache.path=<recorded cache.sqlite>` into a new run directory yields a results.jsonl whose
records, sorted by `id`, equal the recorded ones field for field except:
  - `ledger.wall_s` and `finished_at` (wall clock: they differ between any two runs, so a
    byte-for-byte copy of results.jsonl is impossible),
  - `ledger.cache_hits` and `ledger.replayed_tokens` (what the replay did not compute),
  - record order (problems finish in the order concurrency allows).
`comparable()` strips exactly these fields. This holds because the Context draws each call's
seed from a per-problem RNG, so every call of the recorded run has its own key. It assumes
that a controller's sequence of calls depends only on the results of earlier calls (not on
which concurrent call returned first) and that no `budget.wall_s` limit cut the search short:
replayed calls take no time, so a wall-clock budget stops at a different point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Record fields that legitimately differ between a recorded run and its replay.
VOLATILE_FIELDS = ("finished_at",)
VOLATILE_LEDGER_FIELDS = ("wall_s", "cache_hits", "replayed_tokens")


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """A results.jsonl record without the fields a faithful replay may change (module doc)."""
    out = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
    if isinstance(out.get("ledger"), Mapping):
        out["ledger"] = {k: v for k, v in out["ledger"].items() if k not in VOLATILE_LEDGER_FIELDS}
    return out
