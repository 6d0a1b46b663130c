# lme4 1.1-31 reference optima for tests/test_reliability.py (hard designs).
# Run from the repository root:  Rscript tests/data/make_reliability_reference.R
# Writes tests/data/reliability_reference.json.
suppressMessages({library(lme4); library(jsonlite)})
ctrl <- lmerControl(optCtrl = list(maxfun = 1e5))
fs <- read.csv("tests/data/factor_slope45.csv")  # y ~ f + (f | g): 9-level f, 45 θ, 60 groups
out <- list()
for (reml in c(TRUE, FALSE)) {
  fit <- lmer(y ~ f + (f | g), fs, REML = reml, control = ctrl)
  out[[length(out) + 1]] <- list(
    model = "factor_slope45", data = "factor_slope45", formula = "y ~ f + (f | g)", REML = reml,
    criterion = if (reml) REMLcrit(fit) else deviance(fit), sigma = sigma(fit),
    fixef = as.list(fixef(fit)))
}
# Designs from benchmarks/sim_study.py where jaxlme once stopped at a spurious boundary
# optimum of the Cholesky parametrization (a zero diagonal of Λ in a vector-valued term).
boundary <- list(
  list("crossed_slope_3", "y ~ x + (1 + x | a) + (1 | b)"),
  list("crossed_slope_5", "y ~ x + (1 + x | a) + (1 | b)"),
  list("factor_slope_0", "y ~ f + (f | g)"),
  list("slope3_3", "y ~ x1 + x2 + (1 + x1 + x2 | g)"),
  list("maximal_0", "y ~ x1 + x2 + (1 + x1 + x2 | a) + (1 + x1 + x2 | b)"),
  # Newton once crept towards the bound here until its iteration cap (not converged)
  list("slope_56", "y ~ x1 + x2 + (1 + x1 | g)"),
  list("maximal_32", "y ~ x1 + x2 + (1 + x1 + x2 | a) + (1 + x1 + x2 | b)"))
for (b in boundary) {
  d <- read.csv(file.path("tests/data", paste0("boundary_", b[[1]], ".csv")), stringsAsFactors = TRUE)
  for (reml in c(TRUE, FALSE)) {
    fit <- suppressWarnings(suppressMessages(lmer(as.formula(b[[2]]), d, REML = reml, control = ctrl)))
    out[[length(out) + 1]] <- list(
      model = paste0("boundary_", b[[1]]), data = paste0("boundary_", b[[1]]), formula = b[[2]], REML = reml,
      criterion = if (reml) REMLcrit(fit) else deviance(fit), sigma = sigma(fit),
      theta = unname(getME(fit, "theta")), fixef = as.list(fixef(fit)))
  }
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = FALSE), "tests/data/reliability_reference.json")
cat("wrote", length(out), "fits\n")
