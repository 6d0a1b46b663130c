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
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = FALSE), "tests/data/reliability_reference.json")
cat("wrote", length(out), "fits\n")
