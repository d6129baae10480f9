"""The trace viewer: static, offline HTML pages drawing each problem's search tree.

`write_viewer(run_dir)` writes `<run_dir>/viewer/index.html` and a page per problem;
`python -m evals.viewer RUN_DIR` does the same from the shell. See docs/trace-viewer.md.
"""

from evals.viewer.page import Viewer, build_viewer, trace_page, write_viewer

__all__ = ["Viewer", "build_viewer", "trace_page", "write_viewer"]
