"""The jaxlme command line: fit (CSV/Parquet, JSON), demo, datasets, and one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import DATA

import jaxlme
from jaxlme.cli import main

FORMULA = "Reaction ~ Days + (Days | Subject)"
REF = json.loads((DATA / "cli_reference.json").read_text())  # tests/data/make_cli_reference.R (lme4, lmerTest)


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
    assert not (files["dir"] / "diag_bootstrap.png").exists()
    argv = ["fit", files["csv"], FORMULA, "--plot", str(png), "--bootstrap", "12", "--level", "0.9"]
    assert main(argv) == 0
    assert "diag_bootstrap.png" in capsys.readouterr().err
    boot_png = files["dir"] / "diag_bootstrap.png"
    assert boot_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and boot_png.stat().st_size > 10_000


def test_bootstrap_json_is_data_and_text_has_one_table(files, capsys):
    pytest.importorskip("jaxlme.bootstrap")
    argv = ["fit", files["csv"], FORMULA, "--bootstrap", "20", "--seed", "3", "--level", "0.9"]
    out = _json(capsys, argv + ["--json"])["bootstrap"]
    assert out["n_requested"] == 20 and out["n"] == 20 and out["seed"] == 3 and out["level"] == 0.9
    assert out["method"] == "percentile" and out["interrupted"] is False
    boot = jaxlme.lmm(FORMULA, jaxlme.datasets.load("sleepstudy")).bootstrap(20, seed=3, progress=False)
    ci, samples = boot.ci(0.9), boot.parameters()
    rows = {r["parameter"]: r for r in out["parameters"]}
    assert list(rows) == list(ci.index)  # fixed effects, SDs, correlation, sigma
    for name, r in rows.items():
        assert set(r) == {"parameter", "estimate", "boot_mean", "bias", "se", "lower", "upper"}
        assert r["estimate"] == pytest.approx(ci.loc[name, "estimate"], rel=1e-8)
        assert r["se"] == pytest.approx(samples[name].std(ddof=1), rel=1e-6)
        assert r["bias"] == pytest.approx(samples[name].mean() - r["estimate"], rel=1e-6, abs=1e-9)
        assert (r["lower"], r["upper"]) == pytest.approx(tuple(ci.loc[name, ["lower", "upper"]]), rel=1e-6)
    # the text output: the bootstrap table once, at the requested level
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("Parametric bootstrap") == 1
    assert text.count("percentile intervals") == 1 and "level 0.9" in text
    assert text.count("sd_Days|Subject") == 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["fit", "no_such_file.csv", FORMULA], "not found: no_such_file.csv"),
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
    # one story: t tests and t intervals (residual df for lm, Satterthwaite for lmer), as R gives them
    for row, ref in zip(rows, REF["demo"]):
        for key in ["age", "df", "p", "lower", "upper"]:
            assert row[key] == pytest.approx(ref[key], rel=2e-4), (row["model"], key)
    assert "Wald" not in out and "95% t interval" in out
    slope = rows[3]  # lmerTest: p = 0.085, [-9.43, 0.79]: the interval includes 0
    assert slope["lower"] < 0 < slope["upper"] and 0.05 < slope["p"]
    assert "[-9.43, 0.79], df 6.8, p = 0.085: it includes 0" in out
    assert "-4.32 [-9.43, 0.79] (p = 0.085)" in out  # the What-changed line agrees
    assert "honest" not in out


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


# -- JSON carries everything summary() shows, checked against lme4/lmerTest ------------------


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_json_fixed_effects_varcorr_and_fit_statistics_match_r(files, capsys, method):
    ref = REF["sleepstudy"][method]
    out = _json(capsys, ["fit", files["csv"], FORMULA, "--json"] + (["--ml"] if method == "ML" else []))
    assert out["ddf"] == "satterthwaite" and out["level"] == 0.95 and out["notes"] == []
    fe = out["fixed_effects"]
    assert [r["term"] for r in fe] == [r["term"] for r in ref["fixed_effects"]]
    for mine, theirs in zip(fe, ref["fixed_effects"]):
        for key in ["estimate", "se", "df", "t", "p", "lower", "upper"]:
            assert mine[key] == pytest.approx(theirs[key], rel=2e-4), (mine["term"], key)
    vc = out["variance_components"]
    sds = [r for r in ref["varcorr"] if r["var2"] is None]
    assert [(r["group"], r["name"]) for r in vc["sd"]] == [(r["group"], r["var1"]) for r in sds]
    for mine, theirs in zip(vc["sd"], sds):
        assert mine["sd"] == pytest.approx(theirs["sdcor"], rel=1e-4)
        assert mine["variance"] == pytest.approx(theirs["vcov"], rel=2e-4)
    (cor,) = vc["correlations"]
    (rcor,) = [r for r in ref["varcorr"] if r["var2"] is not None]
    assert (cor["group"], cor["name1"], cor["name2"]) == (rcor["group"], rcor["var1"], rcor["var2"])
    assert cor["corr"] == pytest.approx(rcor["sdcor"], abs=1e-3)
    assert cor["parameter"] == "cor_Days.(Intercept)|Subject" and "lower" not in cor  # no --profile
    st = out["fit_statistics"]
    for key, rkey in [("aic", "aic"), ("bic", "bic"), ("loglike", "loglik"), ("df_resid", "df_resid")]:
        assert st[key] == pytest.approx(ref[rkey], rel=1e-7), key
    if method == "REML":
        assert st["reml_criterion"] == pytest.approx(ref["reml_criterion"], rel=1e-7) and st["deviance"] is None
    else:
        assert st["deviance"] == pytest.approx(ref["deviance"], rel=1e-7) and st["reml_criterion"] is None
    assert st["nobs"] == 180 and st["ngroups"] == {"Subject": 18} and st["converged"] and not st["singular"]
    res = jaxlme.lmm(FORMULA, jaxlme.datasets.load("sleepstudy"), reml=method == "REML")
    q = np.quantile(res.residuals / res.sigma, [0, 0.25, 0.5, 0.75, 1])
    assert list(st["scaled_residuals"].values()) == pytest.approx(q, rel=1e-6)
    assert f"{st['scaled_residuals']['median']:8.4f}" in res.summary()


@pytest.mark.slow
def test_json_profile_intervals_match_lme4(files, capsys):
    out = _json(capsys, ["fit", files["csv"], FORMULA, "--json", "--profile"])
    assert out["variance_intervals"] == "profile"
    ref = {r["parameter"]: r for r in REF["sleepstudy"]["REML"]["profile"]}
    vc = out["variance_components"]
    rows = vc["sd"] + vc["correlations"]
    assert sorted(r["parameter"] for r in rows) == sorted(ref)
    for r in rows:
        assert r["lower"] == pytest.approx(ref[r["parameter"]]["lower"], rel=2e-3, abs=1e-3), r["parameter"]
        assert r["upper"] == pytest.approx(ref[r["parameter"]]["upper"], rel=2e-3, abs=1e-3), r["parameter"]
    assert main(["fit", files["csv"], FORMULA, "--profile"]) == 0
    text = capsys.readouterr().out
    assert "Profile 95% intervals for the variance components" in text and "cor_Days.(Intercept)|Subject" in text


def test_json_warnings_and_aliased_columns(files, capsys, tmp_path):
    df = jaxlme.datasets.load("sleepstudy")
    df["Days2"] = 2 * df["Days"]
    df.loc[3, "Reaction"] = np.nan
    path = tmp_path / "alias.csv"
    df.to_csv(path, index=False)
    out = _json(capsys, ["fit", str(path), "Reaction ~ Days + Days2 + (1 | Subject)", "--json"])
    assert out["aliased"] == ["Days2"] and [r["term"] for r in out["fixed_effects"]] == ["(Intercept)", "Days"]
    assert any("missing values" in w for w in out["warnings"]) and any("rank deficient" in w for w in out["warnings"])
    assert len(out["warnings"]) == len(set(out["warnings"]))


def test_ml_summary_prints_criteria_once(files, capsys):
    assert main(["fit", files["csv"], FORMULA, "--ml"]) == 0
    text = capsys.readouterr().out
    assert text.count("AIC") == 1 and text.count("BIC") == 1 and text.count("logLik") == 1
    header = next(i for i, line in enumerate(text.splitlines()) if "AIC" in line)
    values = text.splitlines()[header + 1].split()
    ref = REF["sleepstudy"]["ML"]
    assert [float(v) for v in values] == pytest.approx(
        [ref["aic"], ref["bic"], ref["loglik"], ref["deviance"], ref["df_resid"]], abs=0.051
    )
    assert main(["fit", files["csv"], FORMULA]) == 0  # REML: criterion, then logLik/AIC/BIC once
    text = capsys.readouterr().out
    assert text.count("REML criterion") == 1 and text.count("AIC") == 1 and text.count("logLik") == 1


# -- the command's edges: version, syntax errors, closed pipes ---------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxlme {jaxlme.__version__}"


def test_syntax_error_shows_formula_and_caret(files, capsys):
    formula = "Reaction ~ Days + (Days | Subject"
    assert main(["fit", files["csv"], formula]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.rstrip("\n").splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("jaxlme: error: Unmatched '('") and not lines[0].endswith(":")
    assert lines[1] == f"  {formula}"
    col = lines[2].index("^")
    assert lines[2].strip() == "^" and lines[1][col] == "("


class _ClosedPipe(io.TextIOBase):
    """A stdout whose reader has gone: every write raises BrokenPipeError."""

    def write(self, s):
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_pipe_in_process(files, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["fit", files["csv"], FORMULA, "--json"]) == 0
    assert main(["datasets"]) == 0
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [["datasets"], ["fit", "Dyestuff", "Yield ~ 1 + (1 | Batch)"]])
def test_closed_pipe_subprocess(argv):
    """The reader closes the pipe before the command writes (as ``| head -c 0`` would):
    status 0, nothing on stderr (no 'Broken pipe', no traceback)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxlme", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # before the interpreter has even imported jaxlme
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""


def test_closed_pipe_with_head():
    """Through a shell pipe into ``head``, which exits at once (``-c 0``) or after a line."""
    import shutil

    if shutil.which("head") is None or shutil.which("bash") is None:
        pytest.skip("needs bash and head")
    cmd = f"set -o pipefail; {sys.executable} -m jaxlme fit Dyestuff 'Yield ~ 1 + (1 | Batch)' --json | head "
    for opt, lines in [("-c 0", 0), ("-n 1", 1)]:
        proc = subprocess.run(["bash", "-c", cmd + opt], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert proc.stdout.count("\n") == lines


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_anova_flag_matches_lmertest(files, capsys, method):
    ml = ["--ml"] if method == "ML" else []
    out = _json(capsys, ["fit", files["csv"], FORMULA, "--json", "--anova"] + ml)["anova"]
    assert out["type"] == 3 and out["ddf"] == "satterthwaite"
    (row,) = out["table"]
    (ref,) = REF["sleepstudy"][method]["anova"]
    assert row["term"] == ref["term"] == "Days"
    for key in ["sum_sq", "mean_sq", "num_df", "den_df", "F", "p"]:
        assert row[key] == pytest.approx(ref[key], rel=2e-4), key
    assert main(["fit", files["csv"], FORMULA, "--anova"] + ml) == 0
    text = capsys.readouterr().out
    assert "Type III Analysis of Variance Table with Satterthwaite's method" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("Days ") and "1" in ln.split())
    assert float(line.split()[-2]) == pytest.approx(ref["F"], rel=1e-4)


def test_anova_of_a_factor_has_one_row_per_term(capsys):
    """A 3-level factor: one F test with 2 numerator df, as lmerTest (not one row per coefficient)."""
    out = _json(capsys, ["fit", "Pastes", "strength ~ cask + (1 | batch)", "--json", "--anova"])
    (row,) = out["anova"]["table"]
    assert row["term"] == "cask" and row["num_df"] == 2
    (ref,) = REF["pastes_cask_anova"]
    for key in ["sum_sq", "mean_sq", "num_df", "den_df", "F", "p"]:
        assert row[key] == pytest.approx(ref[key], rel=1e-4), key


def test_json_when_satterthwaite_fails_says_so(files, capsys, monkeypatch):
    """No Satterthwaite df: null df, p and intervals and a note, never z-based numbers."""

    def broken(self, ddf="satterthwaite", level=0.95):
        raise ValueError("Hessian not positive definite")

    monkeypatch.setattr(jaxlme.LMMResult, "coefs", broken)
    out = _json(capsys, ["fit", files["csv"], FORMULA, "--json"])
    assert out["ddf"] is None and "Hessian not positive definite" in out["notes"][0]
    for row in out["fixed_effects"]:
        assert row["df"] is None and row["p"] is None and row["lower"] is None and row["upper"] is None
        assert row["t"] == pytest.approx(row["estimate"] / row["se"])
