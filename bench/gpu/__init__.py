"""GPU benchmark of SpaceMind at full size with RANDOM weights (no downloads, no Ray).

    python -m bench.gpu --out bench/results/gpu.json --time-budget 420 [--profile]
    python -m bench.gpu --tiny --out /tmp/gpu_tiny.json [--profile]   # same code, toy sizes, CPU, < 60 s

The train section needs PEFT (a spacemind dependency); the e2e scenes are H.264 videos when PyAV is
installed, else JPEG frame folders (pillow).

The models are loaded as a user loads them (`build.py`): random-weight folders in the published
layouts are written once per run by the library's writer (`spacemind_cli/models/random_checkpoints.py`:
VGGT-1B's hub folder, InternVL3-8B-hf's sharded bf16 folder with the full 151674-token
vocabulary), assembled by `checkpoint assemble` (CGMF d_v 3584, d_s 2048, d_a 1024) and loaded by
`VGGT.from_pretrained` / `SpaceMind.from_pretrained`. The EOS rows of the LM head are then zeroed so
greedy decoding never stops early: every answer is exactly --max-new-tokens tokens, in the baseline
and in spacemind alike.

Sections (each in try/except; an error is recorded and the next section runs; a section that
would start after --time-budget seconds is skipped; the JSON is rewritten after every section):

  env, micro  device, versions, the bf16 peak assumed and HBM bandwidth; bf16 matmul and SDPA
              (VGGT's attention shapes) TFLOP/s: what kernels reach here          (machine.py)
  vggt        frames/s, TFLOP/s, peak memory at 8/16/32/64 frames, ours vs naive  (vggt.py)
  build       the folders written, assembled and loaded by SpaceMind.from_pretrained (build.py)
  e2e         VSI-like workload (8 scenes x 18 questions, 32 frames, synthetic scenes written as videos):
              peer-style baseline (encode + answer_alone per question, batch 1, on a sample of
              questions) vs spacemind cold (the next scene read ahead on a thread, encode, cache
              write, fuse, prefill once per scene, the library's batched answering) vs warm
              (features read back from the FeatureCache written cold). Also: GPU idle per cold
              scene (waiting for the loader, the cache write), prefill TFLOP/s, decode time vs
              batch size, decode bytes/s vs HBM bandwidth                   (e2e.py, scenes.py)
  train       optimizer steps of one 18-question scene as spacemind train takes them (random
              features of the cache's shapes, CGMF + LoRA r256): packed vs separate samples, with
              and without gradient checkpointing, frozen weights fp32 (the loop's) or bf16; step
              time, tokens/s, peak memory, MFU                       (training.py, train_cost.py)
  decode      decode memory and time vs batch size (1..16): the old deep copy + repeat of the
              prefix vs the shared prefix (bench.decode on the built LLM)          (decoding.py)
  projection  full VSI-Bench (288 scenes, 5130 questions, 32 frames) on one GPU, from the measured
              per-scene and per-question costs; SpaceMind-700K x 2 epochs of training in GPU-hours
              beside the paper's ~1,600 H100-hours               (targets.py, train_cost.py)
  targets     met / missed, and what bounds each missed one                       (targets.py)
  profile     (--profile) torch.profiler top ops for one VGGT call and one decode batch (profiling.py)

`context.py` holds what they share (sizes, the run's context, peak memory, timing); `__main__.py`
the arguments, the section loop and the JSON. See bench/README.md for the FLOP formula and what
every figure means.
"""
