"""Training SpaceMind (`spacemind train`): the readers of training files are in :mod:`.data`; the
engine is the rest: :mod:`.config` (hyperparameters), :mod:`.schedule` (which questions each step
trains on), :mod:`.model` (the trainable model), :mod:`.loop`, :mod:`.parallel` (replicated or
sharded workers), :mod:`.state` (resumable state), :mod:`.evaluate` (held-out answers during
training) and :mod:`.export` (the trained checkpoint folder)."""
