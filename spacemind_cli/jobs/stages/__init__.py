"""The stages every executor runs, the same code in-process and in Ray workers:

    load_item    (CPU)   scene fingerprint, cache lookup, decode + preprocess on a miss    load.py
    EncodeStage  (model) features into the cache (`spacemind extract`)                    encode.py
    AnswerStage  (model) features, CGMF, one prefill per scene, batched decoding           answer.py

Both model stages share the model loading (`model.py`) and the features step (`features.py`:
cache read, or encode + cache write). A new kind of job adds its stage here.
"""

from .answer import AnswerStage
from .encode import EncodeStage
from .load import drop_job_caches, load_ahead, load_item, open_job_cache, read_scene, reader_threads, scene_digest
from .model import LoadedStage, ModelStage

__all__ = ["AnswerStage", "EncodeStage", "LoadedStage", "ModelStage", "drop_job_caches", "load_ahead", "load_item", "open_job_cache", "read_scene",
           "reader_threads", "scene_digest"]
