"""normstudy: hyperparameter studies of normalization and optimization methods.

Layers, each importing only those below it (an import-linter contract in pyproject.toml)::

    cli        argument parsing, printing, exit codes
    run/       Ray Tune wiring, callbacks, stages, runner, sync, submit, ui
    analysis/  trials -> comparison -> report -> plots; costs
    store/     results layout, the results reader, MLflow tracker, backlog, lease
    trial/     data, recipes, trainable, checkpoints, validation (torch)
    config/    the spec: pydantic models, loading, paths and arms, secrets (no torch)

``studies.spec``, ``studies.tracking``, ``studies.progress`` and ``studies.trainable`` are
one-line re-exports kept for the Ray Tune state of studies started by normstudy 0.1.
"""
