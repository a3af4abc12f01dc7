"""`fastnn bench`: the JSON schema, the report and chart, torch absent, the workload registry."""
import importlib.util
import json

import numpy as np
import pytest

import fastnn
from fastnn import cli
from fastnn.benchmarks import WORKLOADS, Worker, _load_all, _report, measure, prepare, time_closure


@pytest.fixture(scope="module")
def results():
    # numpy and torch only, one small op: a few seconds of real measurement in worker processes
    return _report.run(["dense"], quick=True, threads=1, progress=False, impls=["numpy", "torch"])


def test_run_produces_valid_results(results):
    assert results["schema"] == "fastnn-bench/2"
    assert results["machine"]["isa"] in ("AVX-512", "AVX2", "SSE", "unknown")
    assert results["sgemm_gflops"] > 0
    assert results["blas"] and results["blas"][0]["internal_api"]
    recs = {r["impl"]: r for r in results["records"] if r["workload"] == "mlp_step"}
    assert recs["numpy"]["median_ms"] > 0 and recs["numpy"]["gflops"] > 0
    assert recs["numba"]["error"] == "not selected"
    if importlib.util.find_spec("torch"):
        assert recs["numpy"]["ratio_to_torch"] == pytest.approx(recs["numpy"]["median_ms"] / recs["torch"]["median_ms"])
    json.dumps(results)  # serialisable


def test_validate_refuses_bad_documents(results):
    bad = json.loads(json.dumps(results))
    bad["records"][0]["median_ms"] = "fast"
    with pytest.raises(ValueError, match=r"records\[0\]\['median_ms'\]"):
        _report.validate(bad)
    bad = dict(results, schema="other/1")
    with pytest.raises(ValueError, match="schema"):
        _report.validate(bad)
    bad = {k: v for k, v in results.items() if k != "records"}
    with pytest.raises(ValueError, match="missing key 'records'"):
        _report.validate(bad)


def test_report_and_chart_written(results, tmp_path):
    _report.write(results, str(tmp_path))
    assert _report.validate(json.loads((tmp_path / "results.json").read_text()))
    md = (tmp_path / "report.md").read_text()
    assert "| mlp_step | numpy |" in md and "sgemm peak" in md
    if importlib.util.find_spec("matplotlib"):
        png = tmp_path / "chart.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image as mpimg

        img = mpimg.imread(str(png))
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


def test_update_doc_replaces_only_marked_tables(results, tmp_path):
    doc = tmp_path / "perf.md"
    doc.write_text("intro\n<!-- bench:mlp -->\nOLDTABLE\n<!-- /bench:mlp -->\n<!-- bench:nope -->\nkeep\n<!-- /bench:nope -->\n")
    assert _report.update_doc(results, str(doc)) == ["mlp"]
    text = doc.read_text()
    assert "OLDTABLE" not in text and "| mlp_step | numpy |" in text and "keep" in text and text.startswith("intro")


def test_torch_absent_says_not_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    res = _report.run(["dense"], quick=True, threads=1, progress=False, impls=["numpy", "torch"])
    torch_rec = [r for r in res["records"] if r["impl"] == "torch"][0]
    assert res["torch"] == "not installed" and torch_rec["error"] == "not installed"
    assert "not installed" in _report.op_table(res, "mlp")


def test_cli_bench_from_json(results, tmp_path, capsys):
    p = tmp_path / "r.json"
    p.write_text(json.dumps(results))
    assert cli.main(["bench", "--from-json", str(p)]) == 0
    assert "| mlp_step |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="ops: expected names"):
        _report.select(["convolution3d"])


def test_registry_is_well_formed():
    _load_all()
    for name, w in WORKLOADS.items():
        assert w.flops > 0 and w.group.count("|") == 2, name
        assert set(w.impls) <= {"seed", "reference", "numpy", "numba", "cython", "auto", "torch"}, name
        assert not w.small or WORKLOADS[w.small].op == w.op, name
    try:  # prepare() sets the process-wide backend (it is meant for worker processes)
        res = time_closure(prepare("mlp_step", "numpy"), min_time=0, min_rounds=1)
    finally:
        fastnn.set_backend("auto")
    assert res["median_s"] > 0 and np.isfinite(res["cold_s"])


def test_peer_worker_never_imports_fastnn_and_keeps_the_environment():
    """torch is timed in a process that never imported fastnn (whose OpenMP runtime and settings
    it would otherwise share), with the environment the user gave."""
    import os

    env = dict(os.environ, FASTNN_TEST_MARKER="as given")
    w = Worker("torch", 1, env)
    try:
        info = w.request(cmd="info")
        assert info["fastnn_imported"] is False
        assert info["env"] == env
        if importlib.util.find_spec("torch"):  # loading and running the workloads imports no fastnn either
            for name in ("mlp_step", "conv_a", "maxpool", "lstm", "sdpa_causal"):
                w.request(cmd="prepare", workload=name, quick=True, data=None)
                w.request(cmd="time", calls=1)
            assert w.request(cmd="info")["fastnn_imported"] is False
    finally:
        w.close()
    fw = Worker("numpy", 1, env)
    try:  # the check can fail: a fastnn worker has it
        assert fw.request(cmd="info")["fastnn_imported"] is True
    finally:
        fw.close()


def test_measure_interleaves_and_reports_errors():
    workers = {i: Worker(i, 1, None) for i in ("numpy", "reference")}
    try:
        res = measure(workers, {"numpy": "mlp_step", "reference": "no_such_workload"}, quick=True)
    finally:
        for w in workers.values():
            w.close()
    assert res["numpy"]["rounds"] >= 3 and res["numpy"]["min_s"] <= res["numpy"]["median_s"] <= res["numpy"]["max_s"]
    assert "KeyError" in res["reference"]["error"]


def test_under_load_reports_load_factors():
    res = _report.run(["mlp_step"], quick=True, threads=1, progress=False, impls=["numpy"], under_load=1)
    rec = [r for r in res["records"] if r["impl"] == "numpy"][0]
    assert res["under_load"] == 1 and rec["loaded_median_ms"] > 0 and rec["load_factor"] > 0
    assert "load factor" in _report.op_table(res, "mlp")
