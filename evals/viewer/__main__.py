"""`python -m evals.viewer RUN_DIR [--out DIR]`: write a run's trace viewer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evals.viewer.page import write_viewer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.viewer",
        description=(
            "Write a static, offline HTML viewer of a `reason` run's search trees: an index of "
            "the problems and one page per problem, drawn from RUN_DIR/traces/*.json. Open the "
            "printed index.html in a browser; no network is needed."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory holding traces/")
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="where to write the pages (RUN_DIR/viewer)"
    )
    args = parser.parse_args(argv)
    try:
        index = write_viewer(args.run_dir, args.out)
    except OSError as exc:  # no traces/, --out naming a file, a folder that cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
