"""Import path of the progress callback in studies pickled by normstudy 0.1. Dropped in
normstudy 0.4."""
from studies.run.progress import ProgressCallback  # noqa: F401
