"""``spacemind eval``: score answer files with each benchmark's official rules.

Public API (the CLI is a thin shell over these; nothing here prints)::

    result = evaluate_file("answers.jsonl", benchmark="auto", variant="official")
    console.print(render_table(result, compare=["run2.json"], references=True))
    Path("r.md").write_text(to_markdown(result))
    json.dump(to_json(result), open("r.json", "w"), indent=2)
    plot(result, "r.png", compare=["run2.json"], references=True)

Benchmarks and where their official definitions come from
---------------------------------------------------------
* VSI-Bench (:mod:`.vsibench`): vision-x-nyu/thinking-in-space and EvolvingLMMs-Lab/lmms-eval,
  ``lmms_eval/tasks/vsibench/utils.py``.
* SQA3D (:mod:`.sqa3d`): embodied-generalist/embodied-generalist (LEO), ``data/data_utils.py``
  (``clean_answer``, ``get_sqa_question_type``), ``evaluator/scanqa_eval.py`` (``answer_match``),
  ``evaluator/sqa3d_eval.py``.
* SPBench (:mod:`.spbench`): ZJU-REAL/SpatialLadder, ``eval_spld/data_utils/vsi_utils.py``,
  ``eval_spld/data_utils/vsibench.py``, ``eval_spld/utils.py``, ``eval_spld/evaluator.py``.

Decisions where the official code is silent, crashes, or where we chose
------------------------------------------------------------------------
* Ground truth 0 on a numeric (MRA) question: the official ``|pred - gt| / gt`` raises
  ``ZeroDivisionError``. We score 1.0 when the parsed prediction is exactly 0, else 0.0.
* Non-numeric / missing ground truth, missing ``question_type``, invalid JSON, unreadable
  Parquet: :class:`~spacemind_cli.errors.InputError` with file and line (or row).
* A row with no prediction (field absent or null) is scored as wrong and counted
  (``n_missing_prediction``, per cell ``n_missing``). An empty string is a prediction and is
  scored by the rules (it never matches).
* SQA3D: LEO's own rules, including the ones for empty strings, which its code does define: a
  prediction is stripped of surrounding whitespace, normalised (``clean_answer``), and an empty
  normalised prediction counts as contained in every answer (EM@R1 = 1), as does an answer that
  normalises to nothing. Variant ``nonempty`` (labelled, not official) scores empty strings as
  never matching. LEO's ``answer_match`` stops at the first answer that contains / is contained
  in the prediction; we keep that order-dependence.
* Unknown question types (official VSI-Bench code: ``ValueError``) are counted per type in
  ``unscored`` and reported; they do not change any score.
* A category with no questions is shown empty and left out of the average (VSI-Bench: the
  official HEAD averages the keys present; SPBench's official code would add a 0 for a missing
  rel.-direction category - we do not, and say so in the notes). If only some of the three
  VSI-Bench rel.-direction types are present, the category averages those present (officially a
  ``KeyError``), with a note.
* SPBench part: forced by ``spbench_part`` / ``--benchmark spbench-si|spbench-mv``, else a row
  field (``part``, ``split``, ``subset``, ``config``, ``benchmark``, ``task``, ``dataset``)
  naming SI or MV, else the file name; otherwise InputError. SPBench has no official overall; we
  print "SPBench overall*" = mean of the SI and MV averages, labelled as ours.
* SPBench replies with ``<answer>`` tags are reduced to the tagged text, as in SpatialLadder's
  default ``thinking`` prompt mode.
* Values are percentages (the official code's x100) at full precision in JSON; tables and
  markdown round to 1 decimal (the paper's precision). VSI-Bench's JSON also carries the official
  ``tabulated_keys`` / ``tabulated_results`` (``.3f``) strings.
* ``benchmark="auto"``: see :func:`detect_benchmark`.

Variants (never the default; labelled wherever a result is shown): see :data:`VARIANTS`.
"""

from __future__ import annotations

from .common import VARIANTS, mean_relative_accuracy, parse_variant
from .evaluate import BENCHMARKS, detect_benchmark, evaluate_file, evaluate_records
from .plot import plot
from .records import Record, load_records
from .references import REFERENCES, Reference, references_for
from .render import load_result_json, render_table, result_from_json, to_json, to_markdown
from .result import EvalResult, Score

__all__ = [
    "BENCHMARKS",
    "REFERENCES",
    "VARIANTS",
    "EvalResult",
    "Record",
    "Reference",
    "Score",
    "detect_benchmark",
    "evaluate_file",
    "evaluate_records",
    "load_records",
    "load_result_json",
    "mean_relative_accuracy",
    "parse_variant",
    "plot",
    "references_for",
    "render_table",
    "result_from_json",
    "to_json",
    "to_markdown",
]
