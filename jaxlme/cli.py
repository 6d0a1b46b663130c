"""The ``jaxlme`` command: fit a model to a CSV/Parquet file, run the tutorial demo, list datasets.

    jaxlme fit DATA FORMULA [--ml] [--json] [--bootstrap N --seed S] [--plot FILE]
    jaxlme demo
    jaxlme datasets

Errors (missing file, bad formula, unknown column) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__, datasets, plots
from .design import DataError
from .formula import FormulaError
from .inference import varpar_names
from .model import LMM
from .params import varpar_name

__all__ = [
    "main",
    "read_data",
    "result_json",
    "variance_components",
    "fit_statistics",
    "bootstrap_json",
    "anova_json",
    "demo",
]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT


class CLIError(Exception):
    """A user error reported as one line."""


def read_data(path: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; a bare bundled-dataset name (e.g. ``sleepstudy``) also works.

    Args:
        path: File path (``.csv``, ``.tsv``, ``.txt``, ``.gz``, ``.parquet``, ``.pq``) or a
            bundled dataset's name.

    Returns:
        The data.
    """

    p = Path(path)
    if not p.exists():
        if p.suffix == "" and path.lower() in {n.lower() for n in datasets.names()}:
            return datasets.load(path)
        raise CLIError(f"data file not found: {path}")
    if p.is_dir():
        raise CLIError(f"data path is a directory, not a file: {path}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            try:
                return pd.read_parquet(p)
            except ImportError:
                raise CLIError("reading Parquet needs pyarrow: pip install 'jaxlme[parquet]'") from None
        if suffix in (".csv", ".txt", ".gz", ".tsv"):
            return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot read {path}: {exc}".splitlines()[0]) from None
    raise CLIError(f"unsupported data file type {suffix or '(none)'!r}: use .csv or .parquet")


def _clean(v: Any) -> Any:
    """JSON-safe scalars: NaN/inf -> None, numpy -> Python."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v


def _records(df: pd.DataFrame, index_name: str) -> list[dict[str, Any]]:
    """A table as a list of JSON-ready rows, its index as the ``index_name`` field."""
    return _clean(df.rename_axis(index_name).reset_index().to_dict(orient="records"))


def _vc_parameter(group: str, var1: Any, var2: Any) -> str:
    """The name :func:`jaxlme.inference.confint` and the bootstrap use for a varcorr row."""
    if group == "Residual":
        return "sigma"
    if var2 is None or (not isinstance(var2, str) and pd.isna(var2)):
        return varpar_name(group, [var1], 0, 0)
    return varpar_name(group, [var1, var2], 1, 0)  # varcorr's (var1, var2): θ's (j, i), i > j


def variance_components(res: Any, intervals: pd.DataFrame | None = None) -> dict[str, list[dict[str, Any]]]:
    """The random-effects table of ``summary()`` as data.

    Args:
        res: A fitted ``LMMResult``.
        intervals: Optional ``confint`` table (rows ``sd_x|g``, ``cor_x.y|g``, ``sigma``;
            columns ``lower``, ``upper``) whose intervals are attached to the matching rows.

    Returns:
        ``{"sd": [...], "correlations": [...]}``: one row per standard deviation (group,
        name, variance, sd, parameter; the residual is group ``Residual``) and one per
        correlation (group, name1, name2, corr, parameter), with ``lower``/``upper`` when
        ``intervals`` is given.
    """
    sds, cors = [], []
    for row in res.varcorr.itertuples(index=False):
        par = _vc_parameter(row.group, row.var1, row.var2)
        if par.startswith("cor_"):
            out = {"group": row.group, "name1": row.var1, "name2": row.var2, "corr": row.sdcor, "parameter": par}
            cors.append(out)
        else:
            name = None if row.group == "Residual" else row.var1
            out = {"group": row.group, "name": name, "variance": row.vcov, "sd": row.sdcor, "parameter": par}
            sds.append(out)
        if intervals is not None:
            out["lower"] = intervals["lower"].get(par)
            out["upper"] = intervals["upper"].get(par)
    return _clean({"sd": sds, "correlations": cors})


def fit_statistics(res: Any) -> dict[str, Any]:
    """The fit's criteria, sizes, scaled-residual quantiles and optimizer outcome (as ``summary()``)."""
    rows = res.model.design.has_rows  # a fit from summed cross-products (Parquet glob) keeps none
    q = np.quantile(res.pearson_residuals / res.sigma, [0, 0.25, 0.5, 0.75, 1.0]) if rows else None
    out = {
        "method": res.method,
        "reml_criterion": res.objective if res.reml else None,
        "deviance": None if res.reml else res.objective,
        "loglike": res.loglike,
        "aic": res.aic,
        "bic": res.bic,
        "npar": res.npar,
        "df_resid": res.df_resid,
        "nobs": res.nobs,
        "ngroups": res.ngroups,
        "scaled_residuals": dict(zip(["min", "q1", "median", "q3", "max"], q)) if rows else None,
        "converged": res.converged,
        "singular": res.singular,
        "optimizer_status": res.opt.status,
        "iterations": res.opt.iterations,
        "gradient_norm": res.opt.gradient_norm,
    }
    return _clean(out)


def bootstrap_json(boot: Any, level: float = 0.95) -> dict[str, Any]:
    """Bootstrap results as data: counts, then per parameter the estimate, the replicates'
    mean, bias and SE, and the percentile interval at ``level`` (the numbers of
    ``boot.summary(level)``).

    Args:
        boot: A ``jaxlme.bootstrap.BootstrapResult``.
        level: Interval level.

    Returns:
        A JSON-ready dict.
    """
    samples = boot.parameters(True)
    ci = boot.ci(level)
    tab = pd.DataFrame(
        {
            "estimate": ci["estimate"],
            "boot_mean": samples.mean(),
            "bias": samples.mean() - ci["estimate"],
            "se": samples.std(ddof=1),
            "lower": ci["lower"],
            "upper": ci["upper"],
        }
    )
    return _clean(
        {
            "n_requested": boot.n_requested,
            "n": boot.n,
            "n_usable": int(boot.usable.sum()),
            "n_failed": boot.n_failed,
            "seed": boot.seed,
            "interrupted": boot.interrupted,
            "level": level,
            "method": "percentile",
            "parameters": _records(tab, "parameter"),
        }
    )


def _coefs(res: Any, level: float) -> tuple[pd.DataFrame, str | None]:
    """The Satterthwaite t table of ``summary()``; when that fails, the plain t values with
    null df, p and intervals, and a note saying why."""
    try:
        return res.coefs(ddf="satterthwaite", level=level), None
    except Exception as exc:  # noqa: BLE001 - summary() shows plain t values in this case too
        tab = pd.DataFrame({"estimate": res.fixef, "se": res.stderr})
        tab["df"], tab["t"], tab["p"] = np.nan, res.fixef / res.stderr, np.nan
        tab["lower"], tab["upper"] = np.nan, np.nan
        return tab, f"Satterthwaite df unavailable ({' '.join(str(exc).split())}): df, p and intervals are null"


def result_json(res: Any, level: float = 0.95, intervals: pd.DataFrame | None = None) -> dict[str, Any]:
    """The fit as a JSON-ready dict: everything ``summary()`` shows, as data.

    Args:
        res: A fitted ``LMMResult``.
        level: Level of the fixed effects' t intervals (Satterthwaite df, lmerTest's).
        intervals: Optional ``res.confint(...)`` table attached to the variance components.

    Returns:
        A dict with lme4's names: ``fixed_effects`` (term, estimate, se, df, t, p, lower,
        upper), ``variance_components`` (SDs and correlations), ``fit_statistics``, and the
        flat ``objective``, ``fixef``, ``stderr``, ``varcorr``, ... of earlier versions.
    """
    tab, note = _coefs(res, level)
    out = {
        "formula": res.model.design.formula.text,
        "method": res.method,
        "nobs": res.nobs,
        "weights": res.model.design.weights_name,
        "ngroups": res.ngroups,
        "objective": res.objective,
        "loglike": res.loglike,
        "aic": res.aic,
        "bic": res.bic,
        "fixef": res.fixef.to_dict(),
        "stderr": res.stderr.to_dict(),
        "sigma": res.sigma,
        "varcorr": res.varcorr.to_dict(orient="records"),
        "theta": res.theta,
        "converged": res.converged,
        "singular": res.singular,
        "iterations": res.opt.iterations,
        "fit_seconds": res.opt.fit_seconds,
        "fixed_effects": _records(tab[["estimate", "se", "df", "t", "p", "lower", "upper"]], "term"),
        "ddf": "satterthwaite" if note is None else None,
        "level": level,
        "aliased": list(res.model.design.aliased),
        "variance_components": variance_components(res, intervals),
        "variance_intervals": None if intervals is None else "profile",
        "fit_statistics": fit_statistics(res),
        "notes": [] if note is None else [note],
    }
    return _clean(out)


def _bootstrap(res: Any, n: int, seed: int | None) -> Any:
    return res.bootstrap(n, seed=seed)


_ANOVA_JSON = {"Sum Sq": "sum_sq", "Mean Sq": "mean_sq", "NumDF": "num_df", "DenDF": "den_df", "F value": "F"}


def _anova(res: Any) -> pd.DataFrame:
    """Type III F tests with Satterthwaite df (lmerTest's ``anova(fit)``)."""
    return res.anova(type=3, ddf="satterthwaite")


def anova_json(table: pd.DataFrame) -> list[dict[str, Any]]:
    """An F table (``res.anova()``) as rows: term, sum_sq, mean_sq, num_df, den_df, F, p.

    Args:
        table: The DataFrame ``res.anova()`` returns (lmerTest's column names).

    Returns:
        One JSON-ready dict per term.
    """
    names = {**_ANOVA_JSON, "Pr(>F)": "p"}
    return _records(table.rename(columns=names), "term")


def _profile(res: Any, level: float) -> pd.DataFrame:

    return res.confint(method="profile", level=level, parm=varpar_names(res))


def _cmd_fit(args: argparse.Namespace) -> int:

    if args.bootstrap is not None and args.bootstrap < 1:
        raise CLIError("--bootstrap N needs N >= 1")
    if not 0 < args.level < 1:  # checked before any fitting, not after a long bootstrap
        raise CLIError(f"--level must be between 0 and 1 (exclusive), got {args.level}")
    # a glob of Parquet files ('data/*.parquet') or a directory of them: streamed in batches
    streamed = any(c in args.data for c in "*?[") or Path(args.data).is_dir()
    data = args.data if streamed else read_data(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = LMM(args.formula, data, weights=args.weights).fit(reml=not args.ml)
        intervals = _profile(res, args.level) if args.profile else None
        anova = _anova(res) if args.anova else None
        boot = _bootstrap(res, args.bootstrap, args.seed) if args.bootstrap else None
    notes = list(dict.fromkeys(str(w.message) for w in caught))
    if args.json:
        out = result_json(res, args.level, intervals)
        out["warnings"] = notes
        if anova is not None:
            out["anova"] = {"type": 3, "ddf": "satterthwaite", "table": anova_json(anova)}
        if boot is not None:
            out["bootstrap"] = bootstrap_json(boot, args.level)
        print(json.dumps(out, indent=2))
    else:
        print(res.summary())
        for msg in notes:
            print(f"warning: {msg}")
        if intervals is not None:
            print()
            print(f"Profile {args.level:.0%} intervals for the variance components (lme4's confint):")
            print(intervals.to_string(float_format=lambda v: f"{v:.4f}"))
        if anova is not None:
            print()
            print("Type III Analysis of Variance Table with Satterthwaite's method:")
            print(anova.rename_axis(None).to_string(float_format=lambda v: f"{v:.5g}"))
        if boot is not None:
            print()
            print(boot.summary(level=args.level))
    if args.plot:
        _plot(res, boot, args.plot, args.level)
    if boot is not None and boot.interrupted:  # partial results are printed, but the run failed
        print(f"jaxlme: interrupted after {boot.n} of {args.bootstrap} bootstrap replicates", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _plot(res: Any, boot: Any, path: str, level: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'jaxlme[plot]'") from None
    plots.diagnostics(res, path, level=level)
    print(f"wrote {path}", file=sys.stderr)
    if boot is not None:
        p = Path(path)
        bpath = p.with_name(f"{p.stem}_bootstrap{p.suffix}")
        plots.save(plots.bootstrap_histograms(boot, level=level), str(bpath))
        print(f"wrote {bpath}", file=sys.stderr)


def _cmd_datasets(args: argparse.Namespace) -> int:

    for name in datasets.names():
        print(f"{name:<12} {datasets.describe(name)}")
    return 0


# -- the demo: the tutorial's sequence on the bounce-time data --------------------------------


def _ols(y: np.ndarray, X: np.ndarray, names: list[str]) -> dict[str, Any]:
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    n, p = X.shape
    s2 = resid @ resid / (n - p)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(X.T @ X)))
    return {
        "coef": pd.Series(beta, index=names),
        "se": pd.Series(se, index=names),
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "sigma": float(np.sqrt(s2)),
        "r2": float(1 - resid @ resid / np.sum((y - y.mean()) ** 2)),
        "n": n,
        "p": p,
        "df": float(n - p),
    }


def _ols_text(title: str, fit: dict[str, Any], show: list[str]) -> str:
    tab = pd.DataFrame({"Estimate": fit["coef"], "Std. Error": fit["se"], "t value": fit["coef"] / fit["se"]})
    hidden = len(tab) - len(show)
    lines = [title, tab.loc[show].to_string(float_format=lambda v: f"{v:.4f}")]
    if hidden:
        lines.append(f"  ... and {hidden} more coefficient(s) (one per county)")
    lines.append(
        f"Residual standard error: {fit['sigma']:.4f} on {fit['n'] - fit['p']} df;  "
        f"R-squared: {fit['r2']:.4f};  RMSE: {fit['rmse']:.4f}"
    )
    return "\n".join(lines)


def _t_row(est: float, se: float, df: float, level: float = 0.95) -> dict[str, float]:
    """t test and t interval of one coefficient with ``df`` degrees of freedom."""
    from scipy import special

    q = float(special.stdtrit(df, 0.5 + level / 2))
    return {"df": df, "p": float(2 * special.stdtr(df, -abs(est / se))), "lower": est - q * se, "upper": est + q * se}


def _age_text(row: dict[str, Any]) -> str:
    return f"{row['age']:.2f} [{row['lower']:.2f}, {row['upper']:.2f}] (p = {row['p']:.2g})"


def _story(rows: list[dict[str, Any]], n_counties: int) -> str:
    """The demo's conclusion, worded from its own numbers (so text and tables agree)."""

    def verdict(row: dict[str, Any]) -> str:
        zero = row["lower"] <= 0 <= row["upper"]
        return f"[{row['lower']:.2f}, {row['upper']:.2f}], df {row['df']:.1f}, p = {row['p']:.2g}: " + (
            "it includes 0" if zero else "it excludes 0"
        )

    ols, fixed, slope, nested = rows[0], rows[1], rows[3], rows[4]
    return (
        "Ordinary regression ignores that visitors from one county resemble each other: its\n"
        f"age effect ({ols['age']:.2f}, with a falsely narrow interval) mixes the between-county confound\n"
        f"with the within-county effect.  The county fixed effect removes the confound (age {fixed['age']:.2f})\n"
        "but spends a parameter per county and says nothing about new counties.  The mixed\n"
        "models share information across counties.  Letting the age slope vary by county\n"
        f"(model 4) widens the interval for the average slope, since only {n_counties} counties inform it:\n"
        f"{verdict(slope)}.  Locations within counties\n"
        f"(model 5, the smallest RMSE, {nested['rmse']:.2f}) leave the average slope uncertain too:\n"
        f"{verdict(nested)}."
    )


def demo(out=None) -> list[dict[str, Any]]:
    """Fit the tutorial's five models to the bundled bounce-time data, printing each and a comparison.

    Each model's age coefficient is reported with the t test and t interval its own summary
    uses (residual df for least squares, Satterthwaite df for the mixed models), so the
    tables, the "what changed" lines and the closing text tell one story.

    Args:
        out: Text stream to print to (default ``sys.stdout``).

    Returns:
        One dict per model: ``model``, ``rmse``, ``age`` (estimate), ``df``, ``p``,
        ``lower``, ``upper`` (95% t interval).
    """
    import formulaic

    out = out or sys.stdout

    def say(*a: Any) -> None:
        print(*a, file=out)

    t_start = time.perf_counter()
    data = datasets.load("bounce_time")
    say(f"Data: bounce_time — {datasets.describe('bounce_time')}")
    say()
    rows: list[dict[str, Any]] = []
    y = data["bounce_time"].to_numpy(float)

    steps = [
        ("1. Ordinary regression", "bounce_time ~ age_scaled", None),
        ("2. County as a fixed effect", "bounce_time ~ age_scaled + C(county)", None),
        ("3. Random intercept for county", "bounce_time ~ age_scaled + (1 | county)", True),
        ("4. Random intercept and slope", "bounce_time ~ age_scaled + (1 + age_scaled | county)", True),
        (
            "5. Location nested in county",
            "bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)",
            True,
        ),
    ]
    for title, formula, mixed in steps:
        say("=" * 78)
        say(f"{title}:  {formula}")
        say("=" * 78)
        if mixed:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = LMM(formula, data).fit()
            say(res.summary())
            for w in caught:
                say(f"warning: {w.message}")
            ct = res.coefs(ddf="satterthwaite").loc["age_scaled"]  # the df and p its summary shows
            b = float(ct["estimate"])
            test = {k: float(ct[k]) for k in ("df", "p", "lower", "upper")}
            rmse = float(np.sqrt(np.mean(res.residuals**2)))
        else:
            mm = formulaic.model_matrix(formula, data)
            names = list(mm.rhs.columns)
            fit = _ols(y, np.asarray(mm.rhs, float), names)
            say(_ols_text("Least squares fit", fit, [c for c in names if "county" not in c]))
            b, se = float(fit["coef"]["age_scaled"]), float(fit["se"]["age_scaled"])
            test, rmse = _t_row(b, se, fit["df"]), fit["rmse"]
        rows.append({"model": title, "rmse": rmse, "age": b, **test})
        say()
        if len(rows) > 1:
            prev, cur = rows[-2], rows[-1]
            say(
                f"What changed: RMSE {prev['rmse']:.2f} -> {cur['rmse']:.2f};  age coefficient "
                f"{_age_text(prev)} -> {_age_text(cur)}"
            )
            say()
    say("=" * 78)
    say("Summary: age coefficient with its t test and 95% t interval (residual df for least")
    say("squares, Satterthwaite df for the mixed models, as in their summaries); RMSE of the residuals")
    say("=" * 78)
    tab = pd.DataFrame(rows).set_index("model")[["rmse", "age", "df", "p", "lower", "upper"]]
    tab["CI width"] = tab["upper"] - tab["lower"]
    say(tab.to_string(formatters={"p": lambda v: f"{v:.2g}"}, float_format=lambda v: f"{v:.3f}"))
    say()
    say(_story(rows, int(data["county"].nunique())))
    say(f"\n(demo ran in {time.perf_counter() - t_start:.1f} s)")
    return rows


def _cmd_demo(args: argparse.Namespace) -> int:
    demo()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxlme", description="Linear mixed-effects models in JAX (lme4's formulas and answers)."
    )
    parser.add_argument("--version", action="version", version=f"jaxlme {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{fit,demo,datasets}")
    sub.required = True
    f = sub.add_parser("fit", help="fit a model to a CSV or Parquet file")
    f.add_argument("data", help="CSV or Parquet file (or a bundled dataset name such as sleepstudy)")
    f.add_argument("formula", help="lme4-style formula, e.g. 'Reaction ~ Days + (Days | Subject)'")
    f.add_argument("--ml", action="store_true", help="fit by maximum likelihood (default: REML)")
    f.add_argument("--weights", metavar="COLUMN", help="prior weights column (lme4's weights=)")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    f.add_argument("--bootstrap", type=int, metavar="N", help="parametric bootstrap with N replicates")
    f.add_argument("--seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)")
    f.add_argument(
        "--level", type=float, default=0.95, help="level of every interval: t, profile, bootstrap (default 0.95)"
    )
    f.add_argument(
        "--profile", action="store_true", help="profile-likelihood intervals for the variance components (slower)"
    )
    f.add_argument("--anova", action="store_true", help="type III F tests with Satterthwaite df (lmerTest's anova)")
    f.add_argument("--plot", metavar="FILE", help="write diagnostic plots to FILE (PNG, PDF, SVG)")
    f.set_defaults(func=_cmd_fit)
    d = sub.add_parser("demo", help="the tutorial in one command: from regression to nested mixed models")
    d.set_defaults(func=_cmd_demo)
    ds = sub.add_parser("datasets", help="list the bundled datasets")
    ds.set_defaults(func=_cmd_datasets)
    return parser


def _version() -> str:

    return __version__


def _error_text(exc: Exception) -> str:
    """The message after ``jaxlme: error:``: one line, except a formula syntax error, which
    keeps its formula and caret lines (``^`` under the offending character)."""

    lines = str(exc).splitlines() or [""]
    if isinstance(exc, FormulaError) and len(lines) == 3 and lines[2].strip() == "^":
        return "\n".join([lines[0].rstrip(":"), *lines[1:]])
    return " ".join(str(exc).split())


def _quiet_stdout() -> None:
    """After the reader closed the pipe (``| head``): point stdout at /dev/null, so the
    interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout without a descriptor
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxlme`` command.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 2 for a user error (one ``jaxlme: error:`` line on stderr; a
        formula syntax error adds the formula and a caret line), 130 when interrupted.  A
        reader that closes the pipe early (``jaxlme ... | head``) ends the command quietly
        with status 0: it asked for no more output.
    """

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except (CLIError, FormulaError, DataError, ValueError, OSError, OverflowError) as exc:
        print(f"jaxlme: error: {_error_text(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print("jaxlme: error: out of memory (try fewer bootstrap replicates or a smaller model)", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # pragma: no cover
        print("jaxlme: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The ``jaxlme`` executable: :func:`main`, then a quick exit.

    Tearing down the interpreter after a fit (module dictionaries, JAX's and XLA's objects,
    compiled executables) takes a large share of a small model's run.  A command has
    nothing left to do by then: flush the output, run the ``atexit`` handlers (the
    documented clean-up hook) and leave without the teardown.  Unexpected
    exceptions propagate as usual.
    """
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # a closed pipe (``| head``): nothing more to deliver
            if stream is sys.stdout:
                _quiet_stdout()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    run()
