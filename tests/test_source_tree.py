"""Python started in the repository root after a non-editable ``pip install .`` imports the
source tree's ``fastnn/``, which has no ``fastnn.kernels``: ``import fastnn`` must then say so
in one clear sentence instead of failing later with ModuleNotFoundError in every op."""
import os
import shutil
import site
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_source_tree_without_kernels_fails_at_import_with_one_clear_sentence(tmp_path):
    if not os.path.isdir(os.path.join(ROOT, "fastnn")):
        pytest.skip("not running from a source checkout")
    shutil.copytree(os.path.join(ROOT, "fastnn"), tmp_path / "fastnn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    # The installed dependencies, but not this environment's fastnn install (its editable finder
    # or its site-packages copy): what a non-editable install sees from the repository root.
    deps = [p for p in site.getsitepackages() if os.path.isdir(p)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(deps))
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]; "
            "import fastnn")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastnn was imported from") and "pip install -e ." in last, out.stderr
    assert str(tmp_path / "fastnn") in last
