import pytest


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray on this machine's 2 cores for one test module, shut down after it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
