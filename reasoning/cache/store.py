"""The SQLite file of a call cache: one table per kind of call, JSON values, one connection per
file shared by a run's generator and verifier, and the file a config's `cache.*` asks for.

Refuses, before writing anything, a path that cannot be a call cache (`check_cache_file`).
"""

from __future__ import annotations

import atexit
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal, cast, get_args

Mode = Literal["off", "record", "replay", "auto"]
MODES: tuple[str, ...] = get_args(Mode)
CACHE_FILE = "cache.sqlite"

TABLES = ("generator_calls", "verifier_calls", "renders", "streams")


class CallCache:
    """One SQLite file of recorded calls; thread- and asyncio-safe (one connection, one lock).

    Lookups and writes are sub-millisecond, so they run inline on the event loop: no awaits
    means a replayed call cannot reorder the coroutines around it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_cache_file(self.path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit survives a killed process (not necessarily a power cut)
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA busy_timeout=30000")
                for table in TABLES:
                    self._db.execute(
                        f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, owner TEXT, "
                        "summary TEXT, value TEXT NOT NULL, created REAL)"
                    )
        except (OSError, sqlite3.Error) as exc:
            raise _not_a_cache(self.path, f"{type(exc).__name__}: {exc}") from exc

    def get(self, table: str, key: str) -> Any | None:
        """The stored value (decoded JSON), or None."""
        with self._lock:
            row = self._db.execute(f"SELECT value FROM {table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(
        self,
        table: str,
        key: str,
        value: Any,
        *,
        owner: str = "",
        summary: str = "",
        overwrite: bool = True,
    ) -> None:
        """Store `value` as JSON; `owner`/`summary` are for people inspecting the file."""
        verb = "INSERT OR REPLACE" if overwrite else "INSERT OR IGNORE"
        data = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                f"{verb} INTO {table} (key, owner, summary, value, created) VALUES (?,?,?,?,?)",
                (key, owner, summary, data, time.time()),
            )

    def count(self, table: str, owner: str | None = None) -> int:
        query, args = f"SELECT COUNT(*) FROM {table}", ()
        if owner is not None:
            query, args = query + " WHERE owner = ?", (owner,)
        with self._lock:
            return int(self._db.execute(query, args).fetchone()[0])

    def close(self) -> None:
        """Close the connection (the last close also folds the WAL back into the file)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SQLITE_HEADER = b"SQLite format 3\x00"


def _not_a_cache(path: Path, why: str) -> ValueError:
    return ValueError(
        f"cache.path={path} is not a call cache ({why}); set cache.path to the cache.sqlite of "
        "a recorded run, or to a new file name (cache.mode=record or auto create it)"
    )


def check_cache_file(path: str | Path) -> None:
    """Refuse, without creating or changing anything, a path that cannot be a call cache: a
    directory, a file that is not SQLite, an SQLite database of other tables, a file under a
    file. A missing file is fine (record and auto create it)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise _not_a_cache(path, "it is a directory")
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise _not_a_cache(path, f"{parent} is a file, not a directory")
        return
    try:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise _not_a_cache(path, f"cannot read it: {exc.strerror or exc}") from exc
    if not header:
        return  # an empty file: SQLite makes it a database on first write
    if header != _SQLITE_HEADER:
        raise _not_a_cache(path, "it is not an SQLite file")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise _not_a_cache(path, f"SQLite cannot read it: {exc}") from exc
    if tables and not tables & set(TABLES):
        raise _not_a_cache(
            path, f"an SQLite database of other tables: {', '.join(sorted(tables)[:5])}"
        )


_open: dict[Path, CallCache] = {}


def open_cache(path: str | Path) -> CallCache:
    """A shared CallCache per file, so a run's generator and verifier use one connection."""
    resolved = Path(path).expanduser().resolve()
    if resolved not in _open:
        _open[resolved] = CallCache(resolved)
    return _open[resolved]


def close_caches() -> None:
    while _open:
        _open.popitem()[1].close()


atexit.register(close_caches)


def cache_for(cfg: Any, run_dir: str | Path | None = None) -> tuple[Mode, CallCache] | None:
    """The mode and file that `cfg.cache` asks for; None when caching is off.

    Fails fast when replay has nothing to read, before anything expensive happens.
    """
    node = cfg.get("cache") or {}
    mode = node.get("mode", "off")
    mode = "off" if mode in (None, False) else str(mode)  # YAML reads a bare `off` as False
    if mode not in MODES:
        raise ValueError(f"cache.mode={mode!r}; valid: {', '.join(MODES)}")
    if mode == "off":
        return None
    path = node.get("path")
    if path is None:
        if run_dir is None:
            raise ValueError(f"cache.mode={mode} needs cache.path=FILE here (no run directory)")
        path = Path(run_dir) / CACHE_FILE
    if mode == "replay" and not Path(path).expanduser().exists():
        raise FileNotFoundError(
            f"cache.mode=replay: no cache at {path}; set cache.path to the cache.sqlite of a "
            "recorded run (cache.mode=record or auto)"
        )
    return cast(Mode, mode), open_cache(path)  # CallCache refuses a file that is no cache
