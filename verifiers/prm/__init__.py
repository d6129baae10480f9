"""Process reward models (PRMs) served by vLLM's pooling runner, in-process or over HTTP.

A PRM reads the question and the partial solution with a marker token after every step and
returns, at each marker, the probability that the solution is still correct (docs/verifiers.md).
vLLM's STEP pooling keeps only the output rows at the marker token (`step_tag_id`), so one
forward pass gives one two-class row per step:

- Qwen2.5-Math-PRM (`format="qwen"`): chat prompt, steps joined by `<extra_0>`, a native
  two-label head (`Qwen2ForProcessRewardModel`); reward = softmax(row)[1].
- Math-Shepherd (`format="math_shepherd"`): plain text laid out as search-and-learn writes it
  (system prompt, question, steps separated by blank lines, each ending in " ки"); a causal LM
  whose reward is P(+) among the `+`/`-` logits at each tag. vLLM 0.32's `returned_token_ids`
  slices the rows *before* the classifier (hidden states, not vocabulary logits), so it cannot
  do this; instead the LM is converted with `convert="classify"` and
  `hf_overrides={"classifier_from_token": [+, -], "method": "no_post_processing"}`, which turns
  the `+`/`-` rows of `lm_head` into a two-label head, and STEP pooling then gives [logit(+),
  logit(-)] per tag, exactly the LM's logits there (checked against transformers).

One job per module:

- `formats`: prompt layouts, tokenization with left truncation, logits -> P(correct);
- `batching`: `MicroBatcher`, which merges concurrent score calls into engine batches;
- `engine`: the in-process `vllm.LLM` pooling engine, shared per engine config;
- `http`: the client of a vLLM server's `/pooling` endpoint;
- `verifier`: `PoolingPRM`, the Verifier that composes them (`_target_: verifiers.prm.PoolingPRM`).
"""

from verifiers.prm.batching import MicroBatcher
from verifiers.prm.formats import (
    FORMATS,
    QWEN_SYSTEM_PROMPT,
    EncodedPrompt,
    MathShepherdFormat,
    PRMFormat,
    QwenPRMFormat,
    RenderedPrompt,
    encode_prompt,
    positive_probability,
)
from verifiers.prm.verifier import PoolingPRM

__all__ = [
    "FORMATS",
    "QWEN_SYSTEM_PROMPT",
    "EncodedPrompt",
    "MathShepherdFormat",
    "MicroBatcher",
    "PRMFormat",
    "PoolingPRM",
    "QwenPRMFormat",
    "RenderedPrompt",
    "encode_prompt",
    "positive_probability",
]
