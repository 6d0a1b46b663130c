# Extra lme4 reference fits for the formula syntax beyond ../shared/reference.
# Run from the repository root:  Rscript tests/data/make_extra_reference.R
# Writes tests/data/lme4_extra_reference.json (same layout as lme4_reference.json,
# with "jformula" = the same model in jaxlme's syntax, "fitted" = fitted(fit), and for the
# stateful transforms "newdata"/"predict" = predict(fit, newdata, re.form = NA) on Days
# outside the training range).
suppressMessages({library(lme4); library(jsonlite)})
sleep <- read.csv("jaxlme/data/sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
sleep$phase <- factor(ifelse(sleep$Days < 5, "early", "late"))
sleep$period3 <- factor(c("a", "b", "c")[pmin(sleep$Days %/% 4, 2) + 1])
sleep$period5 <- factor(paste0("p", sleep$Days %/% 2))
sleep$period <- sleep$Days %/% 3  # an integer column, made a factor inside formulas
new_days <- data.frame(Days = c(0, 2.5, 12, 7), Subject = sleep$Subject[1])
bounce <- read.csv("jaxlme/data/bounce_time.csv")
bounce$county <- factor(bounce$county); bounce$location <- factor(bounce$location)
pen <- read.csv("jaxlme/data/Penicillin.csv")

one <- function(model, data_name, data, formula, jformula, REML, newdata = NULL, rename = NULL) {
  fit <- lmer(as.formula(formula), data = data, REML = REML)
  fe <- fixef(fit); se <- sqrt(diag(as.matrix(vcov(fit))))
  if (!is.null(rename)) {  # jformula's coefficient names where R's formula spells them differently
    names(fe) <- ifelse(names(fe) %in% names(rename), unlist(rename)[names(fe)], names(fe))
    names(se) <- names(fe)
  }
  vc <- as.data.frame(VarCorr(fit))
  vc <- lapply(seq_len(nrow(vc)), function(i) {
    r <- list(grp = vc$grp[i], var1 = vc$var1[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])
    if (!is.na(vc$var2[i])) r$var2 <- vc$var2[i]
    r
  })
  Filter(Negate(is.null), list(model = model, data = data_name, formula = formula, jformula = jformula, REML = REML,
       criterion = if (REML) REMLcrit(fit) else deviance(fit),
       logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
       fixef = as.list(fe), se = as.list(se),
       theta = unname(getME(fit, "theta")), sigma = sigma(fit), varcorr = vc,
       singular = isSingular(fit), nobs = nobs(fit), ngrps = as.list(ngrps(fit)),
       fitted = unname(fitted(fit)),
       newdata = if (!is.null(newdata)) list(Days = newdata$Days),
       predict = if (!is.null(newdata)) unname(predict(fit, newdata = newdata, re.form = NA))))
}
# lme4 has no center(): the reference fits I(Days - mean(Days)), whose predict() would
# centre new data on its own mean, so its predictions are computed with the training mean
center_predict <- function(fit) {
  unname(fixef(fit)[1] + fixef(fit)[2] * (new_days$Days - mean(sleep$Days)))
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
       "diameter ~ 1 + (1 | plate) + (1 | sample)", "diameter ~ 1 + (1 | sample) + (1 | plate)"),
  # R semantics of formula functions (tests/test_formula_semantics.py)
  list("sleep_I_power", "sleepstudy", sleep,
       "Reaction ~ Days + I(Days^2) + (Days | Subject)", "Reaction ~ Days + I(Days^2) + (Days | Subject)",
       newdata = new_days),
  list("sleep_scale", "sleepstudy", sleep,
       "Reaction ~ scale(Days) + (1 | Subject)", "Reaction ~ scale(Days) + (1 | Subject)", newdata = new_days),
  list("sleep_scale_slope", "sleepstudy", sleep,
       "Reaction ~ scale(Days) + (scale(Days) | Subject)", "Reaction ~ scale(Days) + (scale(Days) | Subject)",
       newdata = new_days),
  list("sleep_center", "sleepstudy", sleep,
       "Reaction ~ I(Days - mean(Days)) + (1 | Subject)", "Reaction ~ center(Days) + (1 | Subject)",
       rename = list("I(Days - mean(Days))" = "center(Days)"), center = TRUE),
  list("sleep_poly", "sleepstudy", sleep,
       "Reaction ~ poly(Days, 2) + (1 | Subject)", "Reaction ~ poly(Days, 2) + (1 | Subject)", newdata = new_days),
  list("sleep_poly_raw", "sleepstudy", sleep,
       "Reaction ~ poly(Days, 2, raw = TRUE) + (1 | Subject)", "Reaction ~ poly(Days, 2, raw = TRUE) + (1 | Subject)",
       newdata = new_days),
  list("sleep_log_response", "sleepstudy", sleep,
       "log(Reaction) ~ Days + (1 | Subject)", "log(Reaction) ~ Days + (1 | Subject)"),
  list("sleep_factor_int", "sleepstudy", sleep,
       "Reaction ~ factor(period) + Days + (1 | Subject)", "Reaction ~ factor(period) + Days + (1 | Subject)"),
  list("sleep_as_factor", "sleepstudy", sleep,
       "Reaction ~ as.factor(period) + (1 | Subject)", "Reaction ~ as.factor(period) + (1 | Subject)"),
  list("sleep_offset", "sleepstudy", sleep,
       "Reaction ~ Days + offset(10 * Days) + (1 | Subject)", "Reaction ~ Days + offset(10 * Days) + (1 | Subject)",
       newdata = new_days),
  list("sleep_sqrt", "sleepstudy", sleep,
       "Reaction ~ sqrt(Days + 1) + (1 | Subject)", "Reaction ~ sqrt(Days + 1) + (1 | Subject)"),
  list("sleep_exp", "sleepstudy", sleep,
       "Reaction ~ exp(Days/10) + (1 | Subject)", "Reaction ~ exp(Days/10) + (1 | Subject)"),
  # one grouping factor in two terms (lme4 names them Subject, Subject.1)
  list("sleep_uncorrelated_terms", "sleepstudy", sleep,
       "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
       "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)")
)
out <- list()
for (cs in cases) for (reml in c(TRUE, FALSE)) {
  r <- one(cs[[1]], cs[[2]], cs[[3]], cs[[4]], cs[[5]], reml, newdata = cs$newdata, rename = cs$rename)
  if (isTRUE(cs$center)) {
    fit <- lmer(as.formula(cs[[4]]), data = cs[[3]], REML = reml)
    r$newdata <- list(Days = new_days$Days); r$predict <- center_predict(fit)
  }
  out[[length(out) + 1]] <- r
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = FALSE), "tests/data/lme4_extra_reference.json")
cat("wrote", length(out), "fits\n")
