"""The language model's context: the one limit `answer` refuses over-long prompts by and `train`
refuses over-long examples by, checked on token counts before any tensor is built.

    budget = ContextBudget.from_checkpoint("runs/tiny-ckpt")   # tokenizer + configs, no weights
    budget.example_problem("train.jsonl record 3", prompt, target, num_frames=32)  # None or one line
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError


def context_limit(llm_config) -> int | None:
    """The LLM's context in tokens (`max_position_embeddings` of the text config), or None when
    the config does not say."""
    limit = getattr(getattr(llm_config, "text_config", llm_config), "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def over_context(what: str, prefix_len: int, own: int, extra: str, extra_tokens: int, limit: int | None) -> str | None:
    """Why `own` tokens after a `prefix_len`-token visual prefix, plus `extra_tokens` (new tokens
    to generate, or nothing), cannot fit a `limit`-token context; None when they fit."""
    need = prefix_len + own + extra_tokens
    if limit is None or need <= limit:
        return None
    tail = f" and {extra_tokens} {extra}" if extra_tokens else ""
    return (f"{what} is {own} tokens; with the {prefix_len}-token visual prefix{tail} that is {need}, "
            f"over the model's context of {limit} tokens")


class ContextBudget:
    """Token counts of training examples against a checkpoint's context, from its tokenizer and
    configs alone: the driver checks every example without loading a weight."""

    def __init__(self, tokenizer, prompt_config, tokens_per_frame: int, limit: int | None):
        self.tokenizer = tokenizer
        self.prompt = prompt_config
        self.tokens_per_frame = tokens_per_frame
        self.limit = limit
        self._prefix: dict[int, int] = {}

    @classmethod
    def from_checkpoint(cls, root: str | Path, trusted_paths=()) -> ContextBudget:
        from transformers import AutoTokenizer, InternVLConfig

        from .checkpoint import load_config, resolve_component

        config = load_config(root)
        base = resolve_component(Path(root), config.base, "base (InternVL)", trusted_paths)
        local = Path(base).exists()
        try:
            llm_config = InternVLConfig.from_pretrained(base, local_files_only=local)
            tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=local, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot read InternVL's tokenizer or config in {base}: "
                                  f"{' '.join(str(exc).split())[:300]}") from None
        return cls(tokenizer, config.prompt, int(llm_config.image_seq_length), context_limit(llm_config))

    def prefix_tokens(self, num_frames: int) -> int:
        from .spacemind import prefix_text

        if num_frames not in self._prefix:
            text = prefix_text(self.prompt, self.tokens_per_frame, num_frames)
            self._prefix[num_frames] = self._count(text)
        return self._prefix[num_frames]

    def _count(self, text: str) -> int:
        # verbose=False: the count is how we find an over-long text; transformers' warning about
        # one would be noise (and wrong: nothing of that length is indexed).
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def example_problem(self, what: str, prompt: str, target: str, num_frames: int) -> str | None:
        """Why the example (its prompt, then its target and the end-of-turn token, after the
        scene's visual prefix) cannot be trained within the context, or None."""
        if self.limit is None:
            return None
        from .spacemind import suffix_text

        prefix = self.prefix_tokens(num_frames)
        # Tokenizing is cheap next to the tensors it spares: a 100,000-character turn is a list of
        # ints here, not activations of that length.
        own = self._count(suffix_text(prompt)) + self._count(target) + 1  # + end of turn
        return over_context(f"{what}: the example (question and answer)", prefix, own, "", 0, self.limit)
