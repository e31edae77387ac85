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
