import pytest
import torch


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray on this machine's 2 cores for one test module, shut down after it."""
    import ray

    if ray.is_initialized():  # a Ray left over by a test of another module
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def one_thread():
    """Tests train on one intra-op thread (the machine has two cores, Ray takes the rest)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _study_runs(storage, experiment: str):
    """(client, parent runs, trial runs) of an experiment in the default MLflow store."""
    from mlflow import MlflowClient

    from studies.store.layout import default_tracking_uri

    client = MlflowClient(default_tracking_uri(storage))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("normstudy.role") == "study"]
    children = [r for r in runs if r.data.tags.get("normstudy.role") == "trial"]
    return client, parents, children


@pytest.fixture
def study_runs():
    """``study_runs(storage, experiment)`` -> (client, parent runs, trial runs)."""
    return _study_runs
