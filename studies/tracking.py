"""Import path of the tracker and callback in studies pickled by normstudy 0.1. Dropped in
normstudy 0.4."""
from studies.run.callbacks import MLflowTrialCallback  # noqa: F401
from studies.store.tracker import StudyTracker  # noqa: F401
