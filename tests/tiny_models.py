"""Tiny random-init checkpoints that vLLM on CPU loads in seconds, for PRM code-path tests.

Real PRMs (7B) cannot be downloaded here or in CI, and SmolLM2 has no PRM head, so the tests
build stand-ins with the same architecture names and special tokens: a byte-level BPE tokenizer
trained in a second, and a 2-layer model with head_dim 32 (CPU attention rejects 16). The
weights are random but seeded, so scores are arbitrary yet reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN_STEP_TOKEN = "<extra_0>"
SHEPHERD_TAG = "ки"  # the step tag word; texts write it as " ки"
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_HIDDEN = 128
_LAYERS = 2
_HEADS = 4  # head_dim 32


def _corpus() -> list[str]:
    """Math-flavoured text, enough for BPE to learn digits, operators and common words."""
    lines = []
    for a in range(1, 60):
        for b in (3, 7, 12, 25):
            lines.append(f"Step {a % 9 + 1}: {a} + {b} = {a + b}, so {a} * {b} = {a * b}. ки")
            lines.append(f"The answer is \\boxed{{{a - b}}}. Therefore x = {a} - {b} ки")
    lines.append("Please reason step by step, and put your final answer within \\boxed{}.")
    lines.append("What is the sum? Compute the product. Solve for x. Let us add the numbers.")
    return lines


def _tokenizer(target: Path, *, chat: bool) -> int:
    """Train and save a byte-level BPE tokenizer; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    if chat:
        fast.add_special_tokens(
            {
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "additional_special_tokens": ["<|im_start|>", "<|im_end|>", QWEN_STEP_TOKEN],
            }
        )
        fast.chat_template = CHATML_TEMPLATE
    else:
        # Math-Shepherd style: "ки" is one token, "+"/"-" are plain vocabulary entries.
        fast.add_tokens([SHEPHERD_TAG])
        fast.add_special_tokens(
            {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<|endoftext|>"}
        )
    fast.save_pretrained(str(target))
    return len(fast)


def _backbone_config(vocab: int) -> dict:
    return {
        "vocab_size": vocab,
        "hidden_size": _HIDDEN,
        "intermediate_size": 256,
        "num_hidden_layers": _LAYERS,
        "num_attention_heads": _HEADS,
        "num_key_value_heads": 2,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def build_tiny_prm(directory: str | Path, *, seed: int = 0) -> Path:
    """A random-init `Qwen2ForProcessRewardModel` checkpoint with a ChatML tokenizer.

    Weight names follow vLLM's qwen2_rm.py: the Qwen2 backbone under `model.` plus the head
    `score.0` (hidden -> hidden) and `score.2` (hidden -> 2 labels), both with bias. Idempotent:
    an existing checkpoint in `directory` is reused.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2Model

    target = Path(directory)
    if (target / "model.safetensors").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    vocab = _tokenizer(target, chat=True)
    settings = _backbone_config(vocab)
    config = Qwen2Config(**settings, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    backbone = Qwen2Model(config).eval()
    state = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    # A wider init than default so that steps get visibly different scores.
    state["score.0.weight"] = torch.randn(_HIDDEN, _HIDDEN) * 0.1
    state["score.0.bias"] = torch.randn(_HIDDEN) * 0.1
    state["score.2.weight"] = torch.randn(2, _HIDDEN) * 0.2
    state["score.2.bias"] = torch.zeros(2)
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg.update(
        architectures=["Qwen2ForProcessRewardModel"],
        model_type="qwen2",
        num_labels=2,
        id2label={"0": "LABEL_0", "1": "LABEL_1"},
        label2id={"LABEL_0": 0, "LABEL_1": 1},
    )
    (target / "config.json").write_text(json.dumps(cfg, indent=2))
    return target


def build_tiny_shepherd(directory: str | Path, *, seed: int = 0) -> Path:
    """A random-init `MistralForCausalLM` with a one-token "ки" step tag (Math-Shepherd style)."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    target = Path(directory)
    if (target / "model.safetensors").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    vocab = _tokenizer(target, chat=False)
    config = MistralConfig(**_backbone_config(vocab), sliding_window=None)
    config.architectures = ["MistralForCausalLM"]
    torch.manual_seed(seed)
    model = MistralForCausalLM(config).eval()
    with torch.no_grad():  # sharper lm_head rows so P(+) varies across steps
        model.lm_head.weight.mul_(5.0)
    model.save_pretrained(str(target), safe_serialization=True)
    return target
