## Reference numbers for tests/test_cli.py (the CLI's JSON and the demo's intervals).
## Run from the repository root:  Rscript tests/data/make_cli_reference.R
## Writes tests/data/cli_reference.json (lme4 + lmerTest; the tests do not need R).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})
out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest"))))

## --- the demo: age coefficient, t test and 95% t interval per model -------------------
bt <- read.csv(file.path("jaxlme", "data", "bounce_time.csv"), stringsAsFactors = TRUE)
age_row <- function(est, se, df, p) {
  q <- qt(0.975, df)
  list(age = est, df = df, p = p, lower = est - q * se, upper = est + q * se)
}
demo <- list()
for (f in c("bounce_time ~ age_scaled", "bounce_time ~ age_scaled + county")) {
  cf <- summary(lm(as.formula(f), data = bt))$coefficients
  demo[[length(demo) + 1]] <- age_row(cf["age_scaled", 1], cf["age_scaled", 2], df.residual(lm(as.formula(f), data = bt)),
                                      cf["age_scaled", 4])
}
for (f in c("bounce_time ~ age_scaled + (1 | county)",
            "bounce_time ~ age_scaled + (1 + age_scaled | county)",
            "bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)")) {
  cf <- summary(lmerTest::lmer(as.formula(f), data = bt))$coefficients
  demo[[length(demo) + 1]] <- age_row(cf["age_scaled", 1], cf["age_scaled", 2], cf["age_scaled", 3],
                                      cf["age_scaled", 5])
}
out$demo <- demo

## --- sleepstudy: what `jaxlme fit --json` carries ---------------------------------------
sleep <- read.csv(file.path("jaxlme", "data", "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)
fits <- list()
for (reml in c(TRUE, FALSE)) {
  fit <- lmerTest::lmer(Reaction ~ Days + (Days | Subject), data = sleep, REML = reml)
  cf <- summary(fit)$coefficients
  q <- qt(0.975, cf[, "df"])
  fe <- data.frame(term = rownames(cf), estimate = cf[, 1], se = cf[, 2], df = cf[, 3], t = cf[, 4], p = cf[, 5],
                   lower = cf[, 1] - q * cf[, 2], upper = cf[, 1] + q * cf[, 2], row.names = NULL)
  vc <- as.data.frame(VarCorr(fit))
  prof <- confint(fit, method = "profile", oldNames = FALSE, parm = "theta_")
  an <- anova(fit, type = 3, ddf = "Satterthwaite")
  fits[[if (reml) "REML" else "ML"]] <- list(
    fixed_effects = fe,
    varcorr = data.frame(group = vc$grp, var1 = vc$var1, var2 = vc$var2, vcov = vc$vcov, sdcor = vc$sdcor),
    profile = data.frame(parameter = rownames(prof), lower = prof[, 1], upper = prof[, 2], row.names = NULL),
    aic = AIC(fit), bic = BIC(fit), loglik = as.numeric(logLik(fit)), deviance = if (reml) NA else deviance(fit),
    reml_criterion = if (reml) as.numeric(REMLcrit(fit)) else NA, df_resid = df.residual(fit),
    anova = data.frame(term = rownames(an), sum_sq = an[, 1], mean_sq = an[, 2], num_df = an[, 3],
                       den_df = an[, 4], F = an[, 5], p = an[, 6], row.names = NULL)
  )
}
out$sleepstudy <- fits
pastes <- read.csv(file.path("jaxlme", "data", "Pastes.csv"), stringsAsFactors = TRUE)
an <- anova(lmerTest::lmer(strength ~ cask + (1 | batch), data = pastes), type = 3, ddf = "Satterthwaite")
out$pastes_cask_anova <- data.frame(term = rownames(an), sum_sq = an[, 1], mean_sq = an[, 2], num_df = an[, 3],
                                    den_df = an[, 4], F = an[, 5], p = an[, 6], row.names = NULL)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, na = "null", pretty = TRUE),
           file.path("tests", "data", "cli_reference.json"))
