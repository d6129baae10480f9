"""Record/replay cache of generator and verifier calls: rerun a search without an engine.

A `CallCache` is one SQLite file (WAL mode) of content-addressed calls: the key is the sha256
of a canonical JSON of everything the call depends on, so one file can serve many runs and
sweeps, and a changed setting simply misses instead of returning a stale answer.

- generator calls are keyed on (generator name, prompt, every `Sampling` field incl. `seed`
  and `n`). The name stands for the model: give different weights different names.
- verifier calls on (verifier name, its class, problem id + question, each chain's steps and,
  when sampled, its logprobs).
- prompts (`render`) on (generator fingerprint, problem id + question, chain steps), so that a
  replay needs neither the engine nor the tokenizer; a render miss falls back to the inner
  generator (built then, but never started).

Modes (`cache.mode` in conf/config.yaml; `off` means the build code does not wrap at all):
  record  always call the inner object, store (overwriting), return the fresh results
  replay  answer from the file only; a miss raises `CacheMiss`; the engine is never started
          and, built through `reasoning.build`, the generator and verifier never constructed
  auto    hits from the file, misses computed and stored

Replayed results carry `cached=True`; the Context still counts their tokens toward budgets and
the ledger (adding `cache_hits` / `replayed_tokens`), so a replay takes the same decisions.

The package, one job per module: `store` (the SQLite file, and the file a config asks for),
`call_keys` (what a call is keyed on), `codecs` (results to JSON and back), `wrappers`
(`CachedGenerator`, `CachedVerifier`), `replay` (what a replay reproduces: `comparable`).
"""

from reasoning.cache.call_keys import KEY_VERSION, cache_key
from reasoning.cache.codecs import completion_from_json, completion_to_json, delta_from_json
from reasoning.cache.replay import VOLATILE_FIELDS, VOLATILE_LEDGER_FIELDS, comparable
from reasoning.cache.store import (
    CACHE_FILE,
    MODES,
    TABLES,
    CallCache,
    Mode,
    cache_for,
    check_cache_file,
    close_caches,
    open_cache,
)
from reasoning.cache.wrappers import CachedGenerator, CachedVerifier, CacheMiss

__all__ = [
    "CACHE_FILE",
    "KEY_VERSION",
    "MODES",
    "TABLES",
    "VOLATILE_FIELDS",
    "VOLATILE_LEDGER_FIELDS",
    "CacheMiss",
    "CachedGenerator",
    "CachedVerifier",
    "CallCache",
    "Mode",
    "cache_for",
    "cache_key",
    "check_cache_file",
    "close_caches",
    "comparable",
    "completion_from_json",
    "completion_to_json",
    "delta_from_json",
    "open_cache",
]
