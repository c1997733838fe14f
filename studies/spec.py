"""Import path of the spec models in studies pickled by normstudy 0.1 (Ray Tune state).
Dropped in normstudy 0.4."""

from studies.config.spec import (  # noqa: F401
    ChoiceDomain,
    ConfirmSpec,
    GridDomain,
    LogUniformDomain,
    MetricSpec,
    RandIntDomain,
    ResourcesSpec,
    SchedulerSpec,
    SearchSpec,
    SpecError,
    StudySpec,
    TrackingSpec,
    UniformDomain,
)
from studies.config.trial import (  # noqa: F401
    AdamGSpec,
    AliGSpec,
    BNSpec,
    DatasetSpec,
    ENormSpec,
    GrassmannSpec,
    MethodSpec,
    ModelSpec,
    ScheduleSpec,
    SGDGSpec,
    SGDSpec,
    Strict,
    TrainSpec,
    TrialConfig,
    UserDatasetSpec,
    UserOptimizerSpec,
)
