"""SpaceMind inside other programs: entry points, like the CLI, that may use the jobs and models
layers. Each integration lives in its own subpackage and imports its host only where the host
loads it (a host's own import machinery may be what is importing us).

    lmms_eval/   the `spacemind` model of lmms-eval (`lmms-eval --model spacemind`)
"""
