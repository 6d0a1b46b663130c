# lme4 1.1-31 confint() of glmer fits (profile and Wald) for tests/test_glmm_confint.py.
# Run from the repository root: Rscript tests/data/make_glmm_confint_reference.R
# Reads the data sets make_glmm_reference.R writes; writes tests/data/glmm_confint_reference.json.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
stopifnot(packageVersion("lme4") == "1.1.31")
out_dir <- "tests/data"
rd <- function(f) read.csv(file.path(out_dir, f), stringsAsFactors = FALSE)

cases <- list(
  cbpp = list(data = "cbpp.csv", family = "binomial",
              formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  poisson_offset = list(data = "glmm_poisson_offset.csv", family = "poisson",
                        formula = "events ~ x + offset(log(exposure)) + (1 | site)"),
  grouseticks = list(data = "grouseticks.csv", family = "poisson",
                     formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)")
)
ci_list <- function(ci) {
  list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}
out <- list()
for (nm in names(cases)) {
  cs <- cases[[nm]]
  d <- rd(cs$data)
  if (nm == "grouseticks") d$YEAR <- as.character(d$YEAR)
  if (nm == "cbpp") d$period <- as.character(d$period)
  # tolPwrss as make_glmm_reference.R's tight fits: lme4's default PIRLS tolerance moves
  # its finite-difference Hessian, and so the Wald SEs, by ~1%
  fit <- glmer(as.formula(cs$formula), data = d, family = cs$family, control = glmerControl(tolPwrss = 1e-12))
  prof <- suppressWarnings(confint(fit, method = "profile", oldNames = FALSE))
  wald <- confint(fit, method = "Wald", oldNames = FALSE)
  out[[nm]] <- list(formula = cs$formula, family = cs$family, data = cs$data,
                    deviance = deviance(fit), fixef = unname(fixef(fit)),
                    profile = ci_list(prof), wald = ci_list(wald))
}
out$lme4_version <- as.character(packageVersion("lme4"))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"),
           file.path(out_dir, "glmm_confint_reference.json"))
