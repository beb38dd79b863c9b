"""GPU benchmark of SpaceMind at full size with RANDOM weights (no downloads, no Ray).

    python -m bench.gpu --out bench/results/gpu.json --time-budget 420 [--profile]
    python -m bench.gpu --tiny --out /tmp/gpu_tiny.json [--profile]   # same code, toy sizes, CPU, < 60 s

Everything is built directly on the device (`build.py`): VGGT-1B (`VGGTConfig()`), an
InternVL3-8B-shaped `InternVLForConditionalGeneration` (InternViT-300M + Qwen2.5-7B, full
151674-token vocabulary, a tiny BPE tokenizer) and CGMF (d_v 3584, d_s 2048, d_a 1024), each
constructed on the meta device, materialised with `to_empty(device=...)` and given a cheap random
init. The EOS rows of the LM head are zeroed so greedy decoding never stops early: every answer is
exactly --max-new-tokens tokens, in the baseline and in spacemind alike.

Sections (each in try/except; an error is recorded and the next section runs; a section that
would start after --time-budget seconds is skipped; the JSON is rewritten after every section):

  env, micro  device, versions, the bf16 peak assumed and HBM bandwidth; bf16 matmul and SDPA
              (VGGT's attention shapes) TFLOP/s: what kernels reach here          (machine.py)
  vggt        frames/s, TFLOP/s, peak memory at 8/16/32/64 frames, ours vs naive  (vggt.py)
  build       the InternVL/CGMF build, SpaceMind assembled from the parts         (build.py)
  e2e         VSI-like workload (8 scenes x 18 questions, 32 frames, synthetic frames in memory):
              peer-style baseline (encode + answer_alone per question, batch 1, on a sample of
              questions) vs spacemind cold (encode, cache write, fuse, prefill once per scene,
              the library's batched answering) vs warm (features read back from the FeatureCache
              written cold). Also: prefill TFLOP/s, decode time vs batch size, decode bytes/s vs
              HBM bandwidth                                                        (e2e.py)
  projection  full VSI-Bench (288 scenes, 5130 questions, 32 frames) on one GPU, from the measured
              per-scene and per-question costs                                     (targets.py)
  targets     met / missed, and what bounds each missed one                       (targets.py)
  profile     (--profile) torch.profiler top ops for one VGGT call and one decode batch (profiling.py)

`context.py` holds what they share (sizes, the run's context, peak memory, timing); `__main__.py`
the arguments, the section loop and the JSON. See bench/README.md for the FLOP formula and what
every figure means.
"""
