"""Import path of the spec models in studies pickled by normstudy 0.1 (Ray Tune state)."""
from studies.config.spec import *  # noqa: F403
from studies.config.trial import *  # noqa: F403
