import os

# Hub look-ups retry for 20-30 s before failing: the suite never touches the hub.
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny test models are fastest on one thread, and on a busy 2-core machine several
# OpenMP threads per process spin against each other (a 30x slow-down was measured).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """The tiny encoder/decoder pair, built once per test session in a temporary folder."""
    from harness.tiny import tiny_pair as build

    return build(root=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def demo_data():
    from harness.demo_data import DEMO_DATA_DIR

    return str(DEMO_DATA_DIR)


def run_cli(*argv) -> int:
    from harness.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance for one test module (2 CPUs, no dashboard), shut down after it."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ettin-harness[ray]')")
    try:
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=100 * 2**20,
                 log_to_driver=False)
    except Exception as exc:  # e.g. no /dev/shm or no free ports in a sandbox
        pytest.skip(f"a local Ray cluster cannot start here: {type(exc).__name__}: {exc}")
    yield ray
    ray.shutdown()
