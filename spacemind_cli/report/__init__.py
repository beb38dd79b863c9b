"""``spacemind report``: browse a run as a static web page: frames, questions, predictions, truth.

Public API (the CLI is a thin shell over it; nothing here prints)::

    summary = build_report("answers.jsonl", "scenes/", "report/", compare="other.jsonl")
    # -> report/index.html, opens from file:// with no server and no network

* Scores are ``spacemind eval``'s (:mod:`spacemind_cli.eval`): the table is the one
  ``render_table`` builds, per-question scores are ``EvalResult.samples``.
* Thumbnails: exactly the answers' ``frame_indices`` of every scene, 160 px JPEGs, cached by
  content in the report folder (:mod:`.thumbs`).
* Page: overview rendered in Python (:mod:`.page`), the questions as one JSON blob paged, filtered
  and searched in the browser by ``static/app.js``.
"""

from __future__ import annotations

from .build import MARKER, ReportConfig, build_report
from .data import Run, build_model, load_run
from .thumbs import ThumbConfig

__all__ = ["MARKER", "ReportConfig", "Run", "ThumbConfig", "build_model", "build_report", "load_run"]
