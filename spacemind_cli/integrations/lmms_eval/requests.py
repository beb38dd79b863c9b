"""lmms-eval's chat requests, read without lmms-eval.

A chat request's `args` are `(ctx, doc_to_messages, gen_kwargs, doc_id, task, split)`;
`doc_to_messages(doc)` gives `[{"role": "user", "content": [{"type": "video", "url": PATH},
{"type": "text", "text": PROMPT}]}]` (image tasks: `{"type": "image", "url": PIL image or path}`).
From each request we take:

- its visual: one video (a path), or an ordered list of images (files or in-memory pictures);
  requests with the same visual form one group, encoded and prefilled once;
- its prompt: the task's own text (several text parts are joined by newlines; the frames always
  come first in our prompt, so text written between images follows them);
- how to decode: `max_new_tokens`, greedy, and the `until` stop strings.

Anything we would otherwise have to ignore silently (sampling, beams, a system message, a
conversation with earlier turns, audio) is refused with an error naming the request, before any
work starts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...defaults import DEFAULTS
from ...errors import InputError

DEFAULT_MAX_NEW_TOKENS = DEFAULTS.max_new_tokens  # a task that names none gets what `spacemind answer` decodes

# Keys that change nothing under greedy decoding (or only concern other models' preprocessing),
# accepted with any value; `_GREEDY_VALUES` lists the keys accepted only at their greedy value.
_IGNORED_KEYS = frozenset({"top_p", "top_k", "image_aspect_ratio"})
_GREEDY_VALUES: dict[str, Callable[[Any], bool]] = {
    "temperature": lambda v: v is None or float(v) == 0.0,
    "do_sample": lambda v: v is None or v is False or v in (0, "false", "False"),
    "num_beams": lambda v: v is None or int(v) == 1,
    "repetition_penalty": lambda v: v is None or float(v) == 1.0,
}


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int
    until: tuple[str, ...]  # stop strings: the answer ends before the first one found


@dataclass(frozen=True)
class Visual:
    """What a request shows the model. `key` is equal for equal visuals (the group key)."""

    kind: str  # "video" | "files" (image files) | "pixels" (in-memory images)
    key: tuple  # (kind, what identifies the visual)
    paths: tuple[str, ...] = ()  # video: one path; files: the image files, in order
    images: tuple = field(default=(), compare=False, repr=False)  # pixels: the PIL images, in order

    def describe(self) -> str:
        if self.kind == "video":
            return f"video {self.paths[0]}"
        if self.kind == "files":
            return f"images {', '.join(self.paths[:3])}{' ...' if len(self.paths) > 3 else ''}"
        return f"{len(self.images)} in-memory image(s)"


@dataclass(frozen=True)
class Request:
    index: int  # position in the generate_until call: where its answer goes
    name: str  # "<task> doc <doc_id>", for errors
    visual: Visual
    prompt: str
    decoding: Decoding


@dataclass
class Group:
    """The requests about one visual, in request order."""

    visual: Visual
    requests: list[Request] = field(default_factory=list)

    def by_max_new_tokens(self) -> list[tuple[int, list[Request]]]:
        """The requests by how many tokens they may decode (one call of the answering routine
        each; stop strings are applied per answer), in order of first appearance."""
        out: dict[int, list[Request]] = {}
        for r in self.requests:
            out.setdefault(r.decoding.max_new_tokens, []).append(r)
        return list(out.items())


def read_decoding(gen_kwargs: Any, name: str) -> Decoding:
    """The decoding a request's gen_kwargs ask for; InputError for anything we do not do."""
    if gen_kwargs is None:
        gen_kwargs = {}
    if not isinstance(gen_kwargs, dict):
        raise InputError(f"{name}: gen_kwargs must be a dict, got {type(gen_kwargs).__name__}")
    kwargs = dict(gen_kwargs)
    until = kwargs.pop("until", None)
    if until is None:
        stops: tuple[str, ...] = ()
    elif isinstance(until, str):
        stops = (until,)
    elif isinstance(until, (list, tuple)) and all(isinstance(s, str) for s in until):
        stops = tuple(until)
    else:
        raise InputError(f"{name}: gen_kwargs 'until' must be a string or a list of strings, got {until!r}")
    max_new = kwargs.pop("max_new_tokens", None)
    if max_new is None:
        max_new = DEFAULT_MAX_NEW_TOKENS
    if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
        raise InputError(f"{name}: gen_kwargs 'max_new_tokens' must be a positive integer, got {max_new!r}")
    for key, greedy in _GREEDY_VALUES.items():
        if key in kwargs:
            value = kwargs.pop(key)
            try:
                ok = greedy(value)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError(
                    f"{name}: gen_kwargs {key}={value!r} is not supported: spacemind decodes greedily "
                    "(temperature 0, do_sample false, num_beams 1, repetition_penalty 1)"
                )
    unknown = sorted(k for k in kwargs if k not in _IGNORED_KEYS)
    if unknown:
        raise InputError(
            f"{name}: gen_kwargs {', '.join(unknown)} not supported (spacemind reads until, max_new_tokens, "
            "and greedy settings of temperature, do_sample, num_beams, repetition_penalty)"
        )
    return Decoding(int(max_new), tuple(s for s in stops if s))


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """The answer up to the first stop string (as if decoding had stopped there), stripped as
    all our answers are."""
    cut = len(text)
    for stop in until:
        if stop:
            pos = text.find(stop)
            if 0 <= pos < cut:
                cut = pos
    return text[:cut].strip()


def _field(item: Any, key: str, default=None):
    """A message's or content part's field, from a dict or an object (lmms-eval's pydantic types)."""
    if isinstance(item, dict):
        return item.get(key, default)
    return getattr(item, key, default)


def _pixels_key(image) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _image_visual(urls: list, name: str) -> Visual:
    if all(isinstance(u, (str, os.PathLike)) for u in urls):
        paths = tuple(os.path.abspath(os.fspath(u)) for u in urls)
        return Visual("files", ("files", tuple(os.path.realpath(p) for p in paths)), paths=paths)
    if all(hasattr(u, "tobytes") and hasattr(u, "mode") and hasattr(u, "size") for u in urls):
        return Visual("pixels", ("pixels", tuple(_pixels_key(u) for u in urls)), images=tuple(urls))
    kinds = sorted({type(u).__name__ for u in urls})
    raise InputError(f"{name}: images must all be file paths or all be PIL images, got {', '.join(kinds)}")


def read_messages(messages: Any, name: str) -> tuple[Visual, str]:
    """(visual, prompt) of one request's chat messages; InputError for a shape we cannot ask."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError(f"{name}: doc_to_messages must give a non-empty list of messages, got {messages!r:.80}")
    roles = [_field(m, "role") for m in messages]
    if roles != ["user"]:
        if "assistant" in roles or roles.count("user") > 1:
            raise InputError(f"{name}: multi-round conversations are not supported by spacemind (roles: {roles})")
        raise InputError(
            f"{name}: only one user message is supported (roles: {roles}); the system message is the checkpoint's"
        )
    content = _field(messages[0], "content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    texts: list[str] = []
    videos: list = []
    images: list = []
    for part in content or ():
        kind = _field(part, "type")
        if kind == "text":
            texts.append(str(_field(part, "text", "")))
        elif kind == "video":
            if _field(part, "start_time") is not None or _field(part, "end_time") is not None:
                raise InputError(f"{name}: video start_time/end_time are not supported by spacemind")
            videos.append(_field(part, "url"))
        elif kind == "image":
            images.append(_field(part, "url"))
        else:
            raise InputError(f"{name}: {kind!r} content is not supported by spacemind (video, image and text are)")
    prompt = "\n".join(t for t in texts if t.strip())
    if not prompt.strip():
        raise InputError(f"{name}: the message has no text to ask")
    if videos and images:
        raise InputError(f"{name}: a message with both a video and images is not supported by spacemind")
    if len(videos) > 1:
        raise InputError(f"{name}: {len(videos)} videos in one message; spacemind reads one video per question")
    if videos:
        url = videos[0]
        if not isinstance(url, (str, os.PathLike)):
            raise InputError(f"{name}: the video must be a file path, got {type(url).__name__}")
        path = os.path.abspath(os.fspath(url))
        return Visual("video", ("video", os.path.realpath(path)), paths=(path,)), prompt
    if images:
        return _image_visual(images, name), prompt
    raise InputError(f"{name}: no video or image in the message; spacemind answers about frames")


def read_request(index: int, args: Sequence, task_dict: dict) -> Request:
    """One chat request's `args` -> Request. The doc is `task_dict[task][split][doc_id]`."""
    if not isinstance(args, (list, tuple)) or len(args) != 6:
        raise InputError(
            f"request {index}: expected a chat request (ctx, doc_to_messages, gen_kwargs, doc_id, task, split); "
            f"got {len(args) if isinstance(args, (list, tuple)) else type(args).__name__} arguments. "
            "spacemind is a chat model: do not pass --force_simple"
        )
    _ctx, doc_to_messages, gen_kwargs, doc_id, task, split = args
    name = f"{task} doc {doc_id}"
    try:
        doc = task_dict[task][split][doc_id]
    except (KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{name}: no such doc in the task's {split!r} split ({type(exc).__name__}: {exc})") from None
    if not callable(doc_to_messages):
        raise InputError(f"{name}: the task has no doc_to_messages (spacemind is a chat model)")
    visual, prompt = read_messages(doc_to_messages(doc), name)
    return Request(index, name, visual, prompt, read_decoding(gen_kwargs, name))


def group_requests(requests: Sequence[Request]) -> list[Group]:
    """Requests grouped by visual, groups in order of their first request."""
    groups: dict[Hashable, Group] = {}
    for r in requests:
        groups.setdefault(r.visual.key, Group(r.visual)).requests.append(r)
    return list(groups.values())
