# Extra lme4 reference fits for the formula syntax beyond ../shared/reference.
# Run from the repository root:  Rscript tests/data/make_extra_reference.R
# Writes tests/data/lme4_extra_reference.json (same layout as lme4_reference.json,
# with "jformula" = the same model in jaxlme's syntax).
suppressMessages({library(lme4); library(jsonlite)})
sleep <- read.csv("jaxlme/data/sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
sleep$phase <- factor(ifelse(sleep$Days < 5, "early", "late"))
sleep$period3 <- factor(c("a", "b", "c")[pmin(sleep$Days %/% 4, 2) + 1])
sleep$period5 <- factor(paste0("p", sleep$Days %/% 2))
bounce <- read.csv("jaxlme/data/bounce_time.csv")
bounce$county <- factor(bounce$county); bounce$location <- factor(bounce$location)
pen <- read.csv("jaxlme/data/Penicillin.csv")

one <- function(model, data_name, data, formula, jformula, REML) {
  fit <- lmer(as.formula(formula), data = data, REML = REML)
  vc <- as.data.frame(VarCorr(fit))
  vc <- lapply(seq_len(nrow(vc)), function(i) {
    r <- list(grp = vc$grp[i], var1 = vc$var1[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])
    if (!is.na(vc$var2[i])) r$var2 <- vc$var2[i]
    r
  })
  list(model = model, data = data_name, formula = formula, jformula = jformula, REML = REML,
       criterion = if (REML) REMLcrit(fit) else deviance(fit),
       logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
       fixef = as.list(fixef(fit)), se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
       theta = unname(getME(fit, "theta")), sigma = sigma(fit), varcorr = vc,
       singular = isSingular(fit), nobs = nobs(fit), ngrps = as.list(ngrps(fit)))
}
cases <- list(
  list("bounce_slope_nested", "bounce_time", bounce,
       "bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | location:county)",
       "bounce_time ~ age_scaled + (1 + age_scaled | county) + (1 | county:location)"),
  list("bounce_nested_slash", "bounce_time", bounce,
       "bounce_time ~ age_scaled + (1 | county/location)",
       "bounce_time ~ age_scaled + (1 | county/location)"),
  list("sleep_zerocorr", "sleepstudy", sleep,
       "Reaction ~ Days + (Days || Subject)", "Reaction ~ Days + (Days || Subject)"),
  list("sleep_factor_interaction", "sleepstudy", sleep,
       "Reaction ~ Days * phase + (1 | Subject)", "Reaction ~ Days * phase + (1 | Subject)"),
  list("sleep_factor_slope", "sleepstudy", sleep,
       "Reaction ~ phase + (0 + phase | Subject)", "Reaction ~ phase + (0 + phase | Subject)"),
  list("sleep_vector3", "sleepstudy", sleep,
       "Reaction ~ Days + (period3 | Subject)", "Reaction ~ Days + (period3 | Subject)"),
  list("sleep_vector5", "sleepstudy", sleep,
       "Reaction ~ Days + (0 + period5 | Subject)", "Reaction ~ Days + (0 + period5 | Subject)"),
  list("sleep_log_noint", "sleepstudy", sleep,
       "log(Reaction) ~ 0 + Days + (1 | Subject)", "np.log(Reaction) ~ 0 + Days + (1 | Subject)"),
  list("penicillin_slope_crossed", "Penicillin", pen,
       "diameter ~ 1 + (1 | plate) + (1 | sample)", "diameter ~ 1 + (1 | sample) + (1 | plate)")
)
out <- list()
for (cs in cases) for (reml in c(TRUE, FALSE)) {
  out[[length(out) + 1]] <- one(cs[[1]], cs[[2]], cs[[3]], cs[[4]], cs[[5]], reml)
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = FALSE), "tests/data/lme4_extra_reference.json")
cat("wrote", length(out), "fits\n")
