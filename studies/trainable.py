"""Import path of the Ray Tune trainable in studies pickled by normstudy 0.1. Dropped in
normstudy 0.4."""
from studies.trial.trainable import tune_trainable  # noqa: F401
