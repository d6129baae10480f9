"""Token ids and chat templates without the engine's stack.

The HTTP backend (and the server in front of it) needs a model's tokenizer for two things only:
rendering conversations with the model's chat template, and counting or decoding tokens. Both
come from the model folder's `tokenizer.json` and `tokenizer_config.json`, so a light install
(no torch, vLLM or transformers) reads them with `tokenizers` and renders the template with
jinja2 the way transformers does (sandboxed, `trim_blocks`/`lstrip_blocks`, `raise_exception`,
a `tojson` that does not escape HTML, the named special tokens as variables), which keeps
prompts, and so prefix-cache hits and record/replay keys, byte-identical across installs.
A folder with a `tokenizer.json` is read that way even when transformers is installed (the same
results, without seconds of import at start-up); transformers' own tokenizer is used for anything
else when it is importable (it knows every exotic tokenizer class).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

# The named special tokens transformers passes to every chat template (its
# SPECIAL_TOKENS_ATTRIBUTES): templates read e.g. `bos_token` as a plain variable.
SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
)


class TextTokenizer:
    """What the toolkit asks of a tokenizer: ids, text and the chat template.

    The defaults follow transformers (`encode` adds the model's special tokens, `decode` keeps
    them) except `apply_chat_template`, which returns the rendered text with the assistant's
    turn open, the one use this toolkit has for it.
    """

    name_or_path: str
    bos_token: str | None
    eos_token: str | None
    chat_template: str | dict[str, str] | None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        raise NotImplementedError

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        **kwargs: Any,
    ) -> Any:
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        raise NotImplementedError


def load_text_tokenizer(path: str, *, use_transformers: bool | None = None) -> TextTokenizer:
    """The tokenizer of a model folder (or hub id).

    By default a local folder with a `tokenizer.json` is read with `tokenizers` plus jinja2 even
    when transformers is installed: the renders and ids are the same (tests/test_light_install.py
    and tests/test_openai_backend.py check them), and importing transformers costs seconds of
    CPU at every start-up of a client that only renders and counts. transformers' own tokenizer
    is used for anything else (a hub id, a folder with only a slow tokenizer's files) when it is
    importable, or when `use_transformers=True`; `use_transformers=False` forces the light path.
    """
    if use_transformers is None:
        use_transformers = not _has_fast_file(path) and _transformers_importable()
    if use_transformers:
        from transformers import AutoTokenizer

        return HFTokenizer(AutoTokenizer.from_pretrained(path))
    return JinjaTokenizer.from_folder(_model_files(path))


def _has_fast_file(path: str) -> bool:
    """A local folder with tokenizer.json: the light path reads it as transformers would."""
    return (Path(path).expanduser() / "tokenizer.json").is_file()


def _transformers_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


class HFTokenizer(TextTokenizer):
    """transformers' tokenizer behind the `TextTokenizer` defaults; any other attribute (e.g.
    `convert_tokens_to_ids`) is the wrapped tokenizer's own."""

    def __init__(self, tokenizer: Any) -> None:
        self.hf = tokenizer

    def __getattr__(self, name: str) -> Any:
        if name == "hf":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.hf, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """transformers' own call (`tok(text).input_ids`), for code written against it."""
        return self.hf(*args, **kwargs)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        **kwargs: Any,
    ) -> Any:
        rendered = self.hf.apply_chat_template(
            [dict(m) for m in messages],
            tools=None if tools is None else [dict(t) for t in tools],
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
            **kwargs,
        )
        return self.encode(rendered, add_special_tokens=False) if tokenize else rendered

    def get_vocab(self) -> dict[str, int]:
        return dict(self.hf.get_vocab())


class JinjaTokenizer(TextTokenizer):
    """`tokenizers` for ids, jinja2 for the chat template: no transformers needed."""

    def __init__(
        self,
        tokenizer: Any,  # tokenizers.Tokenizer
        config: Mapping[str, Any],
        chat_template: str | dict[str, str] | None,
        name_or_path: str = "",
    ) -> None:
        self.backend = tokenizer
        self.config = dict(config)
        self.chat_template = chat_template
        self.name_or_path = name_or_path
        self.special_tokens_map: dict[str, str] = {
            name: text
            for name in SPECIAL_TOKEN_NAMES
            if (text := _token_text(self.config.get(name))) is not None
        }
        self.bos_token = self.special_tokens_map.get("bos_token")
        self.eos_token = self.special_tokens_map.get("eos_token")
        # tokenizer.json's post-processor decides which special tokens `encode` adds: like
        # transformers 5, a config's add_bos_token/add_eos_token do not override it.

        # transformers skips the clean-up for BPE models unless told it may corrupt them
        forced = "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"
        self._clean_up = bool(self.config.get("clean_up_tokenization_spaces", False)) and (
            type(tokenizer.model).__name__ != "BPE" or bool(self.config.get(forced))
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> JinjaTokenizer:
        from tokenizers import Tokenizer

        root = Path(folder)
        if not (root / "tokenizer.json").exists():
            raise FileNotFoundError(
                f"{root}: no tokenizer.json; without transformers installed the tokenizer must "
                "come from a folder with tokenizer.json (pip install 'reasoning-toolkit[cpu]' "
                "for transformers)"
            )
        config_file = root / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        legacy = root / "special_tokens_map.json"  # older checkpoints name bos/eos only here
        if legacy.exists():
            named = json.loads(legacy.read_text(encoding="utf-8"))
            for name in SPECIAL_TOKEN_NAMES:
                if config.get(name) is None and name in named:
                    config[name] = named[name]
        return cls(
            Tokenizer.from_file(str(root / "tokenizer.json")),
            config,
            _chat_template(root, config),
            str(root),
        )

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        text = str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))
        return _clean_up_spaces(text) if self._clean_up else text

    def get_vocab(self) -> dict[str, int]:
        return dict(self.backend.get_vocab(with_added_tokens=True))

    def _template(self, tools: Sequence[Any] | None) -> str:
        """The template transformers would pick: the only one, else `tool_use` when tools are
        given and the model has one, else `default`."""
        template = self.chat_template
        if isinstance(template, dict):
            if tools is not None and "tool_use" in template:
                return template["tool_use"]
            if "default" in template:
                return template["default"]
            raise ValueError(
                f"{self.name_or_path}: several chat templates and no default: {sorted(template)}"
            )
        if template is None:
            raise ValueError(f"{self.name_or_path}: the tokenizer has no chat template")
        return template

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        **kwargs: Any,
    ) -> Any:
        tool_list = None if tools is None else [dict(t) for t in tools]
        compiled = _compile(self._template(tool_list))
        rendered = compiled.render(
            **{
                **self.special_tokens_map,
                **kwargs,  # as in transformers: caller's variables override the special tokens
                "messages": [dict(m) for m in messages],
                "tools": tool_list,
                "documents": kwargs.get("documents"),
                "add_generation_prompt": add_generation_prompt,
            }
        )
        return self.encode(rendered, add_special_tokens=False) if tokenize else rendered


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: text, or an AddedToken mapping."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _chat_template(root: Path, config: Mapping[str, Any]) -> str | dict[str, str] | None:
    """The chat template as transformers finds it: `chat_template.jinja` (what transformers 5
    saves), else `chat_template.json` (processors), else tokenizer_config.json's
    `chat_template` (a text, or a list of named templates)."""
    jinja_file = root / "chat_template.jinja"
    if jinja_file.exists():
        return jinja_file.read_text(encoding="utf-8")
    json_file = root / "chat_template.json"
    raw: Any = config.get("chat_template")
    if json_file.exists():
        raw = json.loads(json_file.read_text(encoding="utf-8")).get("chat_template", raw)
    if isinstance(raw, list):
        return {str(t["name"]): str(t["template"]) for t in raw}
    return raw if isinstance(raw, str) else None


def _model_files(path: str) -> Path:
    """A local folder as it is; a hub id: its tokenizer files fetched with huggingface_hub (which
    `tokenizers` depends on), so the light install loads hub models the way transformers does."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import hf_hub_download

    folder: Path | None = None
    for name in _FILES:
        try:
            folder = Path(hf_hub_download(path, name)).parent
        except Exception as exc:  # an optional file the repository lacks
            if name == "tokenizer.json":
                raise FileNotFoundError(f"{path!r}: no tokenizer.json found ({exc})") from exc
    assert folder is not None
    return folder


def _clean_up_spaces(text: str) -> str:
    """transformers' `clean_up_tokenization` (spaces before punctuation and contractions)."""
    for old, new in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(old, new)
    return text


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """JSON as transformers' templates get it: jinja's own `tojson` escapes HTML characters."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=32)
def _compile(template: str) -> Any:
    """A chat template compiled in the environment transformers renders them in."""
    import jinja2.ext
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Generation(Extension):
        """`{% generation %}...{% endgeneration %}` (assistant-mask markers): rendered as is."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(
                lineno
            )

        def _render(self, caller: Callable[[], str]) -> str:
            return caller()

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)
