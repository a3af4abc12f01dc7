"""The distribution ships every op folder of kernels/ as fastnn.kernels.<op> (a non-editable
install once shipped only the compiled extensions); checked from setup.py's own configuration."""
import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def dist(monkeypatch):
    """The keyword arguments setup.py passes to setuptools.setup (captured, nothing built)."""
    if not os.path.exists(os.path.join(ROOT, "setup.py")):
        pytest.skip("not running from a source checkout")
    import runpy
    import types

    import setuptools

    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path("setup.py", run_name="__main__")
    return types.SimpleNamespace(**captured)


def test_every_kernel_folder_is_a_package(dist):
    ops = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, "kernels", "*", "__init__.py")))
    assert ops, "no kernel folders found"
    for op in ops:
        assert f"fastnn.kernels.{op}" in dist.packages, op
    assert dist.package_dir["fastnn.kernels"] == "kernels"


def test_every_cython_kernel_is_an_extension(dist):
    pyx = sorted(glob.glob(os.path.join(ROOT, "kernels", "*", "cython_impl.pyx")))
    names = {e.name for e in dist.ext_modules}
    for p in pyx:
        assert f"fastnn.kernels.{os.path.basename(os.path.dirname(p))}.cython_impl" in names, p


def test_every_fastnn_subpackage_is_listed(dist):
    pkgs = sorted(os.path.relpath(os.path.dirname(p), ROOT).replace(os.sep, ".")
                  for p in glob.glob(os.path.join(ROOT, "fastnn", "**", "__init__.py"), recursive=True))
    assert "fastnn.distributed" in pkgs
    for pkg in pkgs:
        assert pkg in dist.packages, pkg
