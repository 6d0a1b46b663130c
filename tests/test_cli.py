"""The jaxlme command line: fit (CSV/Parquet, JSON), demo, datasets, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import jaxlme
from jaxlme.cli import main

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    df = jaxlme.datasets.load("sleepstudy")
    csv, pq = d / "sleep.csv", d / "sleep.parquet"
    df.to_csv(csv, index=False)
    df.to_parquet(pq)
    return {"csv": str(csv), "parquet": str(pq), "dir": d}


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_json_csv_matches_api(files, capsys):
    out = _json(capsys, ["fit", files["csv"], FORMULA, "--json"])
    for key in [
        "objective",
        "loglike",
        "aic",
        "bic",
        "fixef",
        "stderr",
        "sigma",
        "varcorr",
        "converged",
        "singular",
    ]:
        assert key in out, key
    res = jaxlme.lmm(FORMULA, jaxlme.datasets.load("sleepstudy"))
    assert out["objective"] == pytest.approx(res.objective, rel=1e-9)
    assert out["fixef"]["Days"] == pytest.approx(res.fixef["Days"], rel=1e-8)
    assert out["method"] == "REML" and out["converged"] is True and out["singular"] is False
    assert out["objective"] == pytest.approx(1743.628, abs=1e-3)  # lme4's REML criterion


def test_fit_parquet_ml(files, capsys):
    out = _json(capsys, ["fit", files["parquet"], FORMULA, "--ml", "--json"])
    assert out["method"] == "ML"
    assert out["objective"] == pytest.approx(1751.939, abs=1e-3)  # lme4's ML deviance
    assert out["varcorr"][-1]["group"] == "Residual"


def test_fit_text_summary(files, capsys):
    assert main(["fit", files["csv"], FORMULA]) == 0
    text = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in text and "Days" in text


def test_fit_plot(files, capsys):
    pytest.importorskip("matplotlib")
    png = files["dir"] / "diag.png"
    assert main(["fit", files["csv"], FORMULA, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_bootstrap_option(files, capsys):
    argv = ["fit", files["csv"], FORMULA, "--json", "--bootstrap", "20", "--seed", "3"]
    try:
        import jaxlme.bootstrap  # noqa: F401
    except ImportError:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--bootstrap is not available" in err
        return
    out = _json(capsys, argv)
    assert out["bootstrap"]["n"] == 20 and out["bootstrap"]["ci"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["fit", "no_such_file.csv", FORMULA], "not found: no_such_file.csv"),
        (["fit", "CSV", "Reaction ~ Days + (Days | Subject"], "Unmatched '('"),
        (["fit", "CSV", "Reaction ~ Days + (Days | Nope)"], "'Nope'"),
        (["fit", "CSV", "Reaction ~ Days"], "No random-effects terms"),
    ],
)
def test_errors_are_one_line(files, capsys, argv, needle):
    argv = [files["csv"] if a == "CSV" else a for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxlme: error:") and needle in lines[0]


def test_datasets(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in jaxlme.datasets.names():
        assert name in out


def test_bundled_name_as_data(capsys):
    out = _json(capsys, ["fit", "Dyestuff", "Yield ~ 1 + (1 | Batch)", "--json"])
    assert out["objective"] == pytest.approx(319.6543, abs=1e-3)


def test_demo_in_process(capsys):
    rows = jaxlme.cli.demo()
    out = capsys.readouterr().out
    assert [r["model"][:2] for r in rows] == ["1.", "2.", "3.", "4.", "5."]
    for title in [
        "Ordinary regression",
        "County as a fixed effect",
        "Random intercept and slope",
        "Location nested in county",
        "What changed: RMSE",
    ]:
        assert title in out
    assert "Linear mixed model fit by REML" in out
    # the point of the demo: ignoring the grouping gets the age effect badly wrong
    assert rows[0]["age"] < rows[4]["lower"]
    assert rows[4]["rmse"] < rows[3]["rmse"] < rows[0]["rmse"]


def test_python_dash_m_subprocess(files):
    proc = subprocess.run(
        [sys.executable, "-m", "jaxlme", "fit", files["csv"], "Reaction ~ Days + (Days | Nope)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Nope" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "jaxlme", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "demo" in proc.stdout


def test_the_executable_exits_quickly_but_completely(tmp_path):
    """``run`` (the installed ``jaxlme`` command) skips the interpreter's teardown but still
    delivers all output, runs atexit handlers and returns main's status."""
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "sys.argv = ['jaxlme'] + sys.argv[1:]\n"
        "from jaxlme.cli import run\n"
        "run()\n"
    )
    ok = subprocess.run([sys.executable, "-c", script, "datasets"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0
    assert "sleepstudy" in ok.stdout and ok.stdout.rstrip().endswith("atexit ran")
    bad = subprocess.run(
        [sys.executable, "-c", script, "fit", str(tmp_path / "missing.csv"), "y ~ 1 + (1|g)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "missing.csv" in bad.stderr and "atexit ran" in bad.stdout
