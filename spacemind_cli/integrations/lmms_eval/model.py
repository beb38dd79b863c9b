"""The `spacemind` model of lmms-eval (a chat model): `runner.Runner` behind lmms-eval's model API.

    lmms-eval --model spacemind --model_args checkpoint=CKPT,num_frames=32,cache=CACHE,dtype=auto,batch_size=8 \
        --tasks vsibench

model_args: checkpoint (required); num_frames and sampling (default: the checkpoint's); cache (a
feature cache shared with `spacemind extract/answer`); dtype auto|bf16|fp16|fp32; vggt_weights
fp32|half; batch_size (questions decoded together); device (cuda|cpu, default cuda when there is
one); threads (torch CPU threads). lmms-eval's own `--batch_size N` is used when model_args has
none and N > 1 (its default, 1, would decode one question at a time; answers do not depend on it).
"""

from __future__ import annotations

from typing import Any

from lmms_eval.api.model import lmms

from ...errors import InputError
from .runner import DEFAULT_BATCH_SIZE, Runner, settings_for

_NOT_SUPPORTED = "spacemind supports generate_until only (greedy answers about a video or images)"


def _decode_batch_size(user: Any, harness: Any) -> int:
    """The user's model_args batch_size, else lmms-eval's --batch_size when it asks for more than
    one, else ours. lmms-eval may hand over "auto" or "auto:N": those leave ours."""
    for value, source in ((user, "model_args batch_size"), (harness, "--batch_size")):
        if value is None or (isinstance(value, str) and value.startswith("auto")):
            continue
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise InputError(f"{source} must be a positive integer, got {value!r}") from None
        if n < 1:
            raise InputError(f"{source} must be a positive integer, got {value!r}")
        if source == "--batch_size" and n == 1:
            continue
        return n
    return DEFAULT_BATCH_SIZE


class SpaceMind(lmms):
    is_simple = False

    def __init__(
        self,
        checkpoint: str,
        num_frames: int | None = None,
        sampling: str | None = None,
        cache: str | None = None,
        dtype: str | None = None,
        vggt_weights: str | None = None,
        batch_size: int | str | None = None,
        device: str | None = None,
        threads: int | None = None,
        harness_batch_size: int | str | None = None,
    ) -> None:
        super().__init__()
        settings = settings_for(
            str(checkpoint),
            num_frames=int(num_frames) if num_frames is not None else None,
            sampling=sampling,
            cache=str(cache) if cache is not None else None,
            dtype=None if dtype is None else str(dtype),
            vggt_weights=None if vggt_weights is None else str(vggt_weights),
            batch_size=_decode_batch_size(batch_size, harness_batch_size),
            device=device,
            threads=int(threads) if threads is not None else None,
        )
        self.runner = Runner(settings)
        self.batch_size_per_gpu = settings.batch_size

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> SpaceMind:
        """model_args, plus what lmms-eval adds itself (`batch_size`, `device`, `max_batch_size`):
        a model_args `batch_size` would otherwise clash with lmms-eval's ("multiple values")."""
        from lmms_eval import utils

        args = utils.simple_parse_args_string(arg_string or "")
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        known = set(cls.__init__.__code__.co_varnames[1 : cls.__init__.__code__.co_argcount]) - {"harness_batch_size"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise InputError(f"unknown spacemind model_args: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if "device" in extra and "device" not in args:
            args["device"] = extra["device"]
        return cls(**args, harness_batch_size=extra.get("batch_size"))

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    def generate_until(self, requests) -> list[str]:
        return self.runner.generate([r.args for r in requests], self.task_dict)

    def loglikelihood(self, requests):
        raise NotImplementedError(f"loglikelihood is not supported: {_NOT_SUPPORTED}")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError(f"multi-round generation is not supported: {_NOT_SUPPORTED}")
