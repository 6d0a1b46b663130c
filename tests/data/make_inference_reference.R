## Reference numbers for tests/test_inference.py and tests/test_predict.py.
## Run from the repository root:  Rscript tests/data/make_inference_reference.R
## Writes tests/data/inference_reference.json (lme4 + lmerTest; the tests do not need R).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})
dat <- function(name) read.csv(file.path("tests", "data", paste0(name, ".csv")), stringsAsFactors = TRUE)
sleep <- dat("sleepstudy"); sleep$Subject <- factor(sleep$Subject)
dye <- dat("Dyestuff"); pen <- dat("Penicillin"); pas <- dat("Pastes")
datasets <- list(sleepstudy = sleep, Dyestuff = dye, Penicillin = pen, Pastes = pas)

out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest"))))

## --- Satterthwaite denominator df (lmerTest 3.1) -----------------------------------
satt_models <- list(
  list(name = "sleepstudy_slope", data = "sleepstudy", formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "sleepstudy_int", data = "sleepstudy", formula = "Reaction ~ Days + (1|Subject)"),
  list(name = "sleepstudy_uncorr", data = "sleepstudy", formula = "Reaction ~ Days + (Days||Subject)"),
  list(name = "Dyestuff", data = "Dyestuff", formula = "Yield ~ 1 + (1|Batch)"),
  list(name = "Penicillin_crossed", data = "Penicillin", formula = "diameter ~ 1 + (1|plate) + (1|sample)"),
  list(name = "Pastes_nested", data = "Pastes", formula = "strength ~ 1 + (1|batch/cask)")
)
satt <- list()
for (m in satt_models) {
  for (reml in c(TRUE, FALSE)) {
    fit <- lmerTest::lmer(as.formula(m$formula), data = datasets[[m$data]], REML = reml)
    cf <- summary(fit)$coefficients
    satt[[length(satt) + 1]] <- list(
      model = m$name, data = m$data, formula = m$formula, REML = reml,
      coef = rownames(cf), estimate = unname(cf[, "Estimate"]), se = unname(cf[, "Std. Error"]),
      df = unname(cf[, "df"]), t = unname(cf[, "t value"]), p = unname(cf[, "Pr(>|t|)"]))
  }
}
out$satterthwaite <- satt

## --- Likelihood-ratio tests (anova after ML refits) -----------------------------------
## tests/data/lrt_sleepstudy.json ({"chisq":23.5365..., "df":1}) is the test of the fixed effect Days
## with a random slope in both models: Reaction ~ 1 + (Days|Subject) vs Reaction ~ Days + (Days|Subject)
## (ML deviances 1775.476 and 1751.939, npar 5 and 6).  (1|Subject) vs (Days|Subject) gives Chisq 42.14 on
## Df 2, and (1|Subject) vs (Days||Subject) 42.08 on Df 1; no random-effects pair on these data gives 23.54.
lrt_pairs <- list(
  list(name = "nodays_slope_vs_slope", m1 = "Reaction ~ 1 + (Days|Subject)", m2 = "Reaction ~ Days + (Days|Subject)"),
  list(name = "int_vs_slope", m1 = "Reaction ~ Days + (1|Subject)", m2 = "Reaction ~ Days + (Days|Subject)"),
  list(name = "int_vs_uncorr", m1 = "Reaction ~ Days + (1|Subject)", m2 = "Reaction ~ Days + (Days||Subject)"),
  list(name = "uncorr_vs_slope", m1 = "Reaction ~ Days + (Days||Subject)", m2 = "Reaction ~ Days + (Days|Subject)"),
  list(name = "nodays_vs_int", m1 = "Reaction ~ 1 + (1|Subject)", m2 = "Reaction ~ Days + (1|Subject)")
)
lrt <- list()
for (pr in lrt_pairs) {
  f1 <- lme4::lmer(as.formula(pr$m1), data = sleep)  # REML fits: anova refits with ML
  f2 <- lme4::lmer(as.formula(pr$m2), data = sleep)
  a <- suppressMessages(anova(f1, f2))
  lrt[[length(lrt) + 1]] <- list(
    name = pr$name, formulas = c(pr$m1, pr$m2), npar = unname(a$npar), AIC = unname(a$AIC),
    BIC = unname(a$BIC), logLik = unname(a$logLik), deviance = unname(a$deviance),
    Chisq = unname(a$Chisq), Df = unname(a$Df), p = unname(a[["Pr(>Chisq)"]]))
}
out$lrt <- lrt

## --- Confidence intervals -------------------------------------------------------------
ci <- list()
ci_models <- list(
  list(name = "sleepstudy_slope", data = "sleepstudy", formula = "Reaction ~ Days + (Days|Subject)"),
  list(name = "sleepstudy_int", data = "sleepstudy", formula = "Reaction ~ Days + (1|Subject)"),
  list(name = "Penicillin_crossed", data = "Penicillin", formula = "diameter ~ 1 + (1|plate) + (1|sample)")
)
for (m in ci_models) {
  for (reml in c(TRUE, FALSE)) {
    fit <- lme4::lmer(as.formula(m$formula), data = datasets[[m$data]], REML = reml)
    for (method in c("profile", "Wald")) {
      cc <- suppressMessages(confint(fit, method = method, level = 0.95, oldNames = FALSE))
      ci[[length(ci) + 1]] <- list(model = m$name, data = m$data, formula = m$formula, REML = reml,
                                   method = method, level = 0.95, rows = rownames(cc),
                                   lower = unname(cc[, 1]), upper = unname(cc[, 2]))
    }
  }
}
fit <- lme4::lmer(Reaction ~ Days + (Days|Subject), data = sleep)
cc <- suppressMessages(confint(fit, method = "profile", level = 0.9, oldNames = FALSE))
ci[[length(ci) + 1]] <- list(model = "sleepstudy_slope", data = "sleepstudy",
                             formula = "Reaction ~ Days + (Days|Subject)", REML = TRUE, method = "profile",
                             level = 0.9, rows = rownames(cc), lower = unname(cc[, 1]), upper = unname(cc[, 2]))
out$confint <- ci

## --- Predictions --------------------------------------------------------------------
pred <- list()
fit <- lme4::lmer(Reaction ~ Days + (Days|Subject), data = sleep)
nd <- data.frame(Days = c(0, 3.5, 9, 12, 2, 5), Subject = factor(c("308", "309", "372", "999", "NEW", "330")))
pred[[1]] <- list(model = "sleepstudy_slope", data = "sleepstudy", formula = "Reaction ~ Days + (Days|Subject)",
                  newdata = list(Days = nd$Days, Subject = as.character(nd$Subject)),
                  conditional = unname(predict(fit, newdata = nd, allow.new.levels = TRUE)),
                  population = unname(predict(fit, newdata = nd, re.form = NA)),
                  fitted_head = unname(head(fitted(fit), 10)))
fit <- lme4::lmer(diameter ~ 1 + (1|plate) + (1|sample), data = pen)
nd <- data.frame(plate = c("a", "b", "zz", "x", "new"), sample = c("A", "F", "C", "QQ", "QQ"))
pred[[2]] <- list(model = "Penicillin_crossed", data = "Penicillin", formula = "diameter ~ 1 + (1|plate) + (1|sample)",
                  newdata = list(plate = nd$plate, sample = nd$sample),
                  conditional = unname(predict(fit, newdata = nd, allow.new.levels = TRUE)),
                  population = unname(predict(fit, newdata = nd, re.form = NA)),
                  fitted_head = unname(head(fitted(fit), 10)))
out$predict <- pred

## --- Conditional variances of the random effects (ranef(condVar = TRUE)) -------------
cv <- list()
for (m in list(satt_models[[1]], satt_models[[5]], satt_models[[3]])) {
  fit <- lme4::lmer(as.formula(m$formula), data = datasets[[m$data]])
  re <- ranef(fit, condVar = TRUE)
  groups <- list()
  for (g in names(re)) {
    pv <- attr(re[[g]], "postVar")
    if (is.null(pv)) {
      pv <- lapply(attr(re[[g]], "condVar"), function(a) a)  # list form (|| terms)
    }
    groups[[g]] <- list(levels = rownames(re[[g]]), columns = colnames(re[[g]]),
                        postVar = if (is.list(pv)) lapply(pv, function(a) as.vector(a)) else as.vector(pv),
                        dim = if (is.list(pv)) NULL else dim(pv))
  }
  cv[[length(cv) + 1]] <- list(model = m$name, data = m$data, formula = m$formula, REML = TRUE, groups = groups)
}
out$condvar <- cv

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), file.path("tests", "data", "inference_reference.json"))
cat("wrote tests/data/inference_reference.json\n")
