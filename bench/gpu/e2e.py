"""End to end on a VSI-like workload: scenes x questions, synthetic frames in memory.

  prepare_scenes   scene files (a video per scene, `scenes.py`) and each read once into a
                   PreparedClip (CPU decode + preprocessing, timed apart) + prompts
  warm_up          every kernel family once (encoders, fusion, prefill, batched decode, HF generate)
  run_baseline     peer-style: per question SpaceMind.encode + SpaceMind.answer_alone (batch 1,
                   the full prompt through transformers' generate), on a sample of the questions
  cold_pass        per scene: the next scene read ahead on a thread as the local executor reads
                   it (decode + preprocess), encode, FeatureCache.put, then `answer_scene`; how
                   long the model waits for the loader and for the cache write (`gpu_idle`)
  warm_pass        per scene: FeatureCache.get (page cache dropped first), then `answer_scene`
  answer_scene     fuse, prefill once, then the scene's questions through the library's one
                   scene-answering routine (`models.answering.answer_questions`)
  prefill_rate     the prefill's TFLOP/s
  decode_scaling   one decode batch at several sizes: ms/step, tokens/s, bytes/step vs HBM bandwidth

Each pass reports questions/s, per-scene stage seconds and peak memory; `ratios` divide the
spacemind passes' questions/s by the baseline's.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .context import (
    Ctx,
    Mem,
    mean,
    oom_line,
    param_bytes,
    param_count,
    ratio,
    rnd,
    time_calls,
)


@dataclass
class Scenes:
    """The in-memory workload: one prepared clip, its prompts and its cache key per scene."""

    clips: list  # PreparedClip per scene
    prompts: list[list[str]]  # questions_per_scene VSI-Bench prompts per scene
    keys: list[str]  # feature-cache key per scene
    preprocess_s: list[float]  # CPU preprocessing seconds per scene
    refs: list  # SceneRef per scene: the files the cold pass's loader reads
    decode_s: list[float]  # CPU decoding seconds per scene (sampled frames of its file)
    source: str  # what the scene files are

    def __len__(self) -> int:
        return len(self.clips)


def prepare_scenes(ctx: Ctx, folder: Path) -> Scenes:
    """Write every scene's file under `folder`, then read each once (sequentially, the CPU
    otherwise idle: its decode and preprocess seconds) for the baseline and the warm-up; the
    cold pass reads them again, ahead, as the job does."""
    from bench.workload import scene_prompts

    from .scenes import describe, read_scene, source_frames, write_scene

    z = ctx.sizes
    refs = [write_scene(folder, f"scene_{i:04d}", source_frames(z.frames, z.video_frames, z.frame_hw, seed=1000 + i))
            for i in range(z.scenes)]
    clips, prep_s, dec_s = [], [], []
    for ref in refs:
        clip, timing = read_scene(ref, z.frames, ctx.sm.config.preprocess)
        clips.append(clip)
        dec_s.append(timing["decode_s"])
        prep_s.append(timing["preprocess_s"])
    prompts = [scene_prompts(i, z.questions_per_scene) for i in range(z.scenes)]
    keys = [f"bench-scene-{i:04d}-f{z.frames}" for i in range(z.scenes)]
    return Scenes(clips, prompts, keys, prep_s, refs, dec_s, describe(refs[0], z.video_frames, z.frames))


def workload_figures(ctx: Ctx, scenes: Scenes) -> dict:
    sm, z = ctx.sm, ctx.sizes
    return {
        "scenes": z.scenes, "questions_per_scene": z.questions_per_scene, "questions": z.scenes * z.questions_per_scene,
        "frames": z.frames, "source_frame_hw": list(z.frame_hw), "batch_size": z.batch_size,
        "max_new_tokens": z.max_new_tokens, "vggt_weights": ctx.args.vggt_weights,
        "eos": "suppressed (LM-head EOS rows zeroed): every answer is max_new_tokens tokens",
        "prefix_tokens": len(sm.prefix_ids(z.frames)),
        "suffix_tokens_mean": rnd(mean([len(sm.suffix_ids(p)) for p in scenes.prompts[0]]), 1),
        "prompts": "VSI-Bench prompts of examples/questions.jsonl (spacemind_cli.prompts.build_prompt)",
    }


def warm_up(ctx: Ctx, scenes: Scenes) -> float:
    from spacemind_cli.models.answering import answer_questions

    sm = ctx.sm
    t0 = time.perf_counter()
    enc = sm.encode(scenes.clips[0])
    prefix = sm.prefill(sm.fuse(enc))
    answer_questions(sm, prefix, list(enumerate(scenes.prompts[0][:2])), batch_size=2, max_new_tokens=2)
    sm.answer_alone(enc, scenes.prompts[0][0], max_new_tokens=2)
    ctx.sync()
    del enc, prefix
    ctx.cleanup()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- the baseline


def run_baseline(ctx: Ctx, scenes: Scenes, notes: list[str]) -> tuple[dict, list[dict]]:
    """Each sampled question encoded and answered alone. -> (summary, one row per question)."""
    sm, z = ctx.sm, ctx.sizes
    n_scenes, q = len(scenes), z.questions_per_scene
    picks = [(k % n_scenes, (k * 7) % q) for k in range(max(1, z.baseline_questions))]
    rows = []
    mem = Mem(ctx, base_bytes=param_bytes(sm))
    with mem:
        for si, qi in picks:
            if ctx.left() < ctx.reserve(60 + ctx.after("e2e")) and rows:
                notes.append(f"baseline stopped after {len(rows)} questions (time budget)")
                break
            ctx.sync()
            t0 = time.perf_counter()
            enc = sm.encode(scenes.clips[si])
            ctx.sync()
            t1 = time.perf_counter()
            text = sm.answer_alone(enc, scenes.prompts[si][qi], max_new_tokens=z.max_new_tokens)
            ctx.sync()
            t2 = time.perf_counter()
            rows.append({"scene": si, "question": qi, "encode_s": t1 - t0, "answer_alone_s": t2 - t1, "answer": text})
            del enc
    per_q = mean([r["encode_s"] + r["answer_alone_s"] for r in rows])
    summary = {
        "what": "per question: SpaceMind.encode + SpaceMind.answer_alone (fuse, full-prompt prefill, transformers "
        "generate), batch 1; measured on a sample of the questions (each costs the same)",
        "questions_measured": len(rows),
        "encode_s": rnd(mean([r["encode_s"] for r in rows]), 5),
        "answer_alone_s": rnd(mean([r["answer_alone_s"] for r in rows]), 5),
        "per_question_s": rnd(per_q, 5),
        "questions_per_s": rnd(1 / per_q, 4),
        **mem.figures(),
    }
    return summary, rows


# ---------------------------------------------------------------- spacemind's passes


def answer_scene(ctx: Ctx, enc, si: int, prompts: list[str], row: dict, notes: list[str]):
    """Fuse, prefill once, answer every question of scene `si` with the library's routine, each
    stage synchronised and timed into `row`. -> (prefix, answers in question order).

    A batch that fails is answered one question at a time by the routine (noted); a question
    that fails alone fails the pass: its questions/s would not be a measurement."""
    from spacemind_cli.models.answering import answer_questions

    sm, z = ctx.sm, ctx.sizes
    t0 = time.perf_counter()
    fused = sm.fuse(enc)
    ctx.sync()
    row["fuse_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prefix = sm.prefill(fused)
    ctx.sync()
    row["prefill_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    answers, failures = answer_questions(sm, prefix, list(enumerate(prompts)), batch_size=z.batch_size,
                                         max_new_tokens=z.max_new_tokens, name=lambda qi: f"{qi} of scene {si}")
    ctx.sync()
    row["generate_s"] = time.perf_counter() - t0  # length checks + every batch, as the answer stage pays
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(prompts)} questions failed; first: {failures[0].error}")
    bs = max(1, z.batch_size)
    alone = sum(1 for a in answers if a.batch < min(bs, len(prompts) - a.key // bs * bs))
    if alone:
        notes.append(f"scene {si}: {alone} questions answered one by one after their batch failed")
    return prefix, [a.text for a in sorted(answers, key=lambda a: a.key)]


def open_cache(ctx: Ctx):
    try:
        from spacemind_cli.cache import FeatureCache
    except ImportError as exc:
        raise RuntimeError(f"the feature cache needs pyarrow (a spacemind dependency): {exc}") from None
    ctx.tmp = Path(ctx.args.cache_dir or tempfile.mkdtemp(prefix="spacemind-gpu-bench-"))
    return FeatureCache(ctx.tmp / "cache", create=True)


def cold_pass(ctx: Ctx, scenes: Scenes, cache, notes: list[str]) -> tuple[dict, dict[tuple[int, int], str], list]:
    """As the answer job runs a cold scene with the local executor: the scene read ahead on a
    thread (decode + preprocess) while the model works on the previous one, encode, the cache
    entry written synchronously, answer. -> (summary, {(scene, question): answer}, per scene
    (its stage row, its load {"wait_s", "decode_s", "preprocess_s"}) for `gpu_idle`).

    Scene 0's wait is the pipeline filling (nothing to overlap with; a job pays it once): it is
    kept out of the per-scene stages, the later scenes' waits are the stage `wait_loader_s`."""
    from .scenes import ReadAhead, read_scene

    sm, z = ctx.sm, ctx.sizes
    answers: dict[tuple[int, int], str] = {}
    rows, loads, entry_bytes = [], [], None
    mem = Mem(ctx, base_bytes=param_bytes(sm))

    def read(ref):
        return read_scene(ref, z.frames, sm.config.preprocess)

    with mem, ReadAhead(scenes.refs, read) as loader:
        t_pass = time.perf_counter()
        for si in range(len(scenes)):
            if ctx.left() < ctx.reserve(40 + ctx.after("e2e")) and rows:
                notes.append(f"cold pass stopped after {len(rows)} scenes (time budget)")
                break
            row = {}
            (clip, timing), waited = loader.next()
            loads.append({"wait_s": waited, **timing})
            if si:
                row["wait_loader_s"] = waited
            ctx.sync()
            t0 = time.perf_counter()
            enc = sm.encode(clip)
            ctx.sync()
            row["encode_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            path = cache.put(scenes.keys[si], {"scene": si, "num_frames": z.frames}, enc.tensors(),
                             fingerprint="bench-random-weights")
            row["cache_write_s"] = time.perf_counter() - t0
            entry_bytes = sum(t.numel() * t.element_size() for t in enc.tensors().values())
            row["file_bytes"] = path.stat().st_size
            prefix, texts = answer_scene(ctx, enc, si, scenes.prompts[si], row, notes)
            answers.update({(si, qi): text for qi, text in enumerate(texts)})
            rows.append(row)
            del enc, prefix, clip
        total = time.perf_counter() - t_pass
    summary = pass_summary(rows, total, z.questions_per_scene, mem)
    summary["cache_entry_tensor_bytes"] = entry_bytes
    summary["pipeline_fill_s"] = rnd(loads[0]["wait_s"], 5) if loads else None
    return summary, answers, [(r, load) for r, load in zip(rows, loads)]


GPU_STAGES = ("encode_s", "fuse_s", "prefill_s", "generate_s")  # the model works (synchronised)


def gpu_idle(per_scene: list, source: str) -> dict:
    """Per cold scene: how long the model waited for the loader and for the cache write (the GPU
    has nothing queued during either), its busy time, and the loader's slack: how much longer
    reading this scene could have taken before the model waited (it was read while the model
    worked on the previous scene and wrote its entry)."""
    rows = []
    for i, (row, load) in enumerate(per_scene):
        busy = sum(row.get(k, 0.0) for k in GPU_STAGES)
        loader = load["decode_s"] + load["preprocess_s"]
        r = {"scene": i, "wait_loader_s": load["wait_s"], "cache_write_s": row["cache_write_s"],
             "idle_s": load["wait_s"] + row["cache_write_s"], "busy_s": busy,
             "loader_decode_s": load["decode_s"], "loader_preprocess_s": load["preprocess_s"], "loader_s": loader}
        if i:
            prev_row, _ = per_scene[i - 1]
            r["slack_s"] = sum(prev_row.get(k, 0.0) for k in GPU_STAGES) + prev_row["cache_write_s"] - loader
        rows.append(r)
    steady = rows[1:]  # scene 0 waits for the pipeline to fill, once per job
    idle, busy = sum(r["idle_s"] for r in steady), sum(r["busy_s"] for r in steady)
    return {
        "what": "per cold scene (as the answer job with the local executor runs it): wait_loader_s = the model "
        "blocked on the read-ahead thread for this scene (decode + preprocess not finished), cache_write_s = the "
        "synchronous FeatureCache.put; idle_s = their sum, busy_s = encode + fuse + prefill + answering; slack_s = "
        "the previous scene's busy + cache write - this scene's loader time (negative: the model waited)",
        "scene_source": source,
        "per_scene": [{k: rnd(v, 5) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
        "pipeline_fill_s": rnd(rows[0]["wait_loader_s"], 5) if rows else None,
        "scenes_after_first": len(steady),
        "idle_s_per_scene": rnd(mean([r["idle_s"] for r in steady]), 5),
        "wait_loader_s_per_scene": rnd(mean([r["wait_loader_s"] for r in steady]), 5),
        "cache_write_s_per_scene": rnd(mean([r["cache_write_s"] for r in steady]), 5),
        "busy_s_per_scene": rnd(mean([r["busy_s"] for r in steady]), 5),
        "loader_s_per_scene": rnd(mean([r["loader_s"] for r in rows]), 5),
        "min_slack_s": rnd(min((r["slack_s"] for r in steady), default=None), 5),
        "idle_fraction": rnd(ratio(idle, idle + busy), 4),
    }


def warm_pass(ctx: Ctx, scenes: Scenes, cache, n_scenes: int, notes: list[str]) -> dict:
    """Read the first n_scenes entries the cold pass wrote back (page cache dropped first),
    answer. Keeps scene 0's prefix in ctx.prefix for decode scaling and the profile."""
    from spacemind_cli.models.spacemind import EncoderOutputs

    dropped = all(drop_page_cache(cache.path_for(scenes.keys[i])) for i in range(n_scenes))
    rows = []
    mem = Mem(ctx, base_bytes=param_bytes(ctx.sm))
    with mem:
        t_pass = time.perf_counter()
        for si in range(n_scenes):
            if ctx.left() < ctx.reserve(25 + ctx.after("e2e")) and rows:
                notes.append(f"warm pass stopped after {len(rows)} scenes (time budget)")
                break
            row = {}
            ctx.sync()
            t0 = time.perf_counter()
            entry = cache.get(scenes.keys[si], device=ctx.device)
            enc = EncoderOutputs.from_tensors(entry.tensors)
            ctx.sync()
            row["cache_read_s"] = time.perf_counter() - t0
            prefix, _ = answer_scene(ctx, enc, si, scenes.prompts[si], row, notes)
            rows.append(row)
            if si == 0:
                ctx.prefix = prefix
            del entry, enc, prefix
        total = time.perf_counter() - t_pass
    summary = pass_summary(rows, total, ctx.sizes.questions_per_scene, mem)
    summary["page_cache_dropped_first"] = dropped
    return summary


def drop_page_cache(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return True
    except (OSError, AttributeError):
        return False


def pass_summary(rows: list[dict], total: float, q_per_scene: int, mem: Mem) -> dict:
    stages = sorted({k for r in rows for k in r if k.endswith("_s")})
    questions = len(rows) * q_per_scene
    return {
        "scenes": len(rows), "questions": questions, "total_s": rnd(total, 4),
        "questions_per_s": rnd(questions / total, 4) if total > 0 and questions else None,
        "per_scene_s": {k: rnd(mean([r.get(k) for r in rows]), 5) for k in stages},
        "stage_s": {k: rnd(sum(r.get(k, 0.0) for r in rows), 4) for k in stages},
        **mem.figures(),
    }


# ---------------------------------------------------------------- bounds: prefill and decode


def prefill_rate(ctx: Ctx, prefix_len: int, prefill_s: float | None) -> dict:
    lm = ctx.sm.internvl.model.language_model
    tcfg = ctx.sm.internvl.config.text_config
    n_lm = param_count(lm) - lm.get_input_embeddings().weight.numel()
    L = prefix_len
    flops = 2 * n_lm * L + 2 * tcfg.num_hidden_layers * L * L * tcfg.hidden_size
    tflops = ratio(flops / 1e12, prefill_s)
    return {"tokens": L, "tflop": rnd(flops / 1e12, 3), "s": prefill_s, "tflops": rnd(tflops, 4),
            "fraction_of_peak": rnd(ratio(tflops, ctx.peak_tflops), 3),
            "formula": "2*N_lm*L + 2*layers*L^2*d (causal attention), N_lm = LM params without the embedding"}


def decode_scaling(ctx: Ctx, prompts: list[str], notes: list[str]) -> list[dict]:
    """One decode batch (SpaceMind.generate on ctx.prefix) per size in sizes.decode_batches, with
    the least bytes a step must read: every LM weight once, the shared prefix's keys/values once
    per batch (decoding never copies or repeats it, models/prefix_attention.py; the fp32 copy of
    it that the attention makes is extra traffic, not counted) and each row's own suffix."""
    from spacemind_cli.models.generation import kv_bytes

    sm, z = ctx.sm, ctx.sizes
    if ctx.prefix is None:
        return []
    lm = sm.internvl.model.language_model
    tcfg = sm.internvl.config.text_config
    n_lm = param_count(lm) - lm.get_input_embeddings().weight.numel()
    elem = torch.finfo(sm.dtype).bits // 8
    head_dim = tcfg.hidden_size // tcfg.num_attention_heads
    kv_per_token = 2 * tcfg.num_hidden_layers * tcfg.num_key_value_heads * head_dim * elem  # K and V, every layer
    weights_read = (n_lm + param_count(sm.internvl.lm_head)) * elem
    prefix_kv = kv_bytes(ctx.prefix.cache)  # as held: batch 1, every layer
    mnt = z.max_new_tokens
    pool = prompts * (1 + max(z.decode_batches) // len(prompts))
    out = []
    for b in z.decode_batches:
        if ctx.left() < ctx.reserve(15 + ctx.after("e2e")):
            notes.append(f"decode scaling stopped before batch {b} (time budget)")
            break
        try:
            batch = pool[:b]
            sm.generate(ctx.prefix, batch, max_new_tokens=2)
            t = min(time_calls(ctx, lambda batch=batch: sm.generate(ctx.prefix, batch, max_new_tokens=mnt),
                               warmup=0, reps=1))
        except torch.cuda.OutOfMemoryError as exc:
            ctx.cleanup()
            out.append({"batch": b, "error": oom_line(exc, 160)})
            break
        suffix_tokens = mean([len(sm.suffix_ids(p)) for p in batch]) + mnt  # a row's own keys at the last step
        step_bytes = weights_read + prefix_kv + b * suffix_tokens * kv_per_token
        out.append({
            "batch": b, "s": rnd(t, 4), "s_per_question": rnd(t / b, 5), "tokens_per_s": rnd(b * mnt / t, 1),
            "ms_per_step": rnd(1000 * t / mnt, 2),
            "bytes_per_step_gb": rnd(step_bytes / 1e9, 3),
            "achieved_gbps": rnd(step_bytes * mnt / t / 1e9, 1),
            "fraction_of_hbm": rnd(ratio(step_bytes * mnt / t / 1e12, ctx.hbm_tbps), 3),
        })
    return out


# ---------------------------------------------------------------- the section


def section_e2e(ctx: Ctx) -> dict:
    if ctx.sm is None:
        raise RuntimeError("the model was not built (see the build section)")
    z = ctx.sizes
    notes: list[str] = []
    res: dict = {"notes": notes}
    cache = open_cache(ctx)  # first: a missing dependency fails before the baseline's time is spent
    where = "--cache-dir" if ctx.args.cache_dir else "a temp folder"
    res["cache"] = f"FeatureCache (Parquet entries, durable writes) in {where}"

    ctx.log(f"e2e: {z.scenes} scenes x {z.questions_per_scene} questions, {z.frames} frames, "
            f"synthetic {z.frame_hw[1]}x{z.frame_hw[0]} frames")
    scenes = prepare_scenes(ctx, ctx.tmp / "scenes")
    ctx.prompts = scenes.prompts[0]
    res["workload"] = workload_figures(ctx, scenes)
    res["workload"]["scene_source"] = scenes.source
    res["cpu_preprocess_s_per_scene"] = rnd(mean(scenes.preprocess_s), 4)
    res["cpu_decode_s_per_scene"] = rnd(mean(scenes.decode_s), 4)

    ctx.log("e2e: warmup")
    res["warmup_s"] = rnd(warm_up(ctx, scenes), 3)

    res["baseline"], base_rows = run_baseline(ctx, scenes, notes)
    ctx.log(f"e2e: baseline {res['baseline']['per_question_s']} s/question")

    res["cold"], answers, per_scene = cold_pass(ctx, scenes, cache, notes)
    ctx.log(f"e2e: cold {res['cold']['questions_per_s']} questions/s")
    res["gpu_idle"] = gpu_idle(per_scene, scenes.source)
    ctx.log(f"e2e: cold GPU idle {res['gpu_idle']['idle_s_per_scene']} s/scene "
            f"(fraction {res['gpu_idle']['idle_fraction']})")
    res["warm"] = warm_pass(ctx, scenes, cache, res["cold"]["scenes"], notes)
    ctx.log(f"e2e: warm {res['warm']['questions_per_s']} questions/s")

    base_qps = res["baseline"]["questions_per_s"]
    res["ratios"] = {
        "cold_vs_baseline": rnd(ratio(res["cold"]["questions_per_s"], base_qps), 3),
        "warm_vs_baseline": rnd(ratio(res["warm"]["questions_per_s"], base_qps), 3),
        "warm_vs_cold": rnd(ratio(res["warm"]["questions_per_s"], res["cold"]["questions_per_s"]), 3),
    }
    matched = [answers[(r["scene"], r["question"])] == r["answer"]
               for r in base_rows if (r["scene"], r["question"]) in answers]
    res["answers_equal_baseline"] = {"compared": len(matched), "equal": sum(matched),
                                     "note": "bf16 batched vs alone may differ in the last bits; informational"}

    prefix_len = res["workload"]["prefix_tokens"]
    res["prefill"] = prefill_rate(ctx, prefix_len, res["warm"]["per_scene_s"].get("prefill_s"))
    res["decode_scaling"] = decode_scaling(ctx, scenes.prompts[0], notes)
    res["decode_note"] = (
        "bytes_per_step: the least a decode step reads: all LM weights once, the shared prefix's keys/values once "
        "per batch (never copied per row) and each row's own suffix keys/values; ms_per_step well above "
        "bytes_per_step / HBM bandwidth means per-step launch/Python overhead bounds decoding"
    )
    ctx.cleanup()
    return res
