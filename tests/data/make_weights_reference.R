# lme4 / lmerTest reference fits with prior weights (lmer(..., weights = w)).
# Run from the repository root:  Rscript tests/data/make_weights_reference.R
# Writes tests/data/lme4_weights_reference.json: per fit the layout of
# lme4_extra_reference.json plus the weight vector used ("weights", NA as null), lmerTest's
# Satterthwaite table, fitted values, response and Pearson residuals.
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
sleep <- read.csv("jaxlme/data/sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
pen <- read.csv("jaxlme/data/Penicillin.csv")

sleep$w_days <- 0.5 + sleep$Days / 9
sleep$w_subj <- 1 + (as.integer(sleep$Subject) %% 3)
sleep$w_days4 <- 4 * sleep$w_days
sleep$w_na <- sleep$w_days; sleep$w_na[c(3, 50, 111)] <- NA
pen$w <- 0.5 + (seq_len(nrow(pen)) %% 4) / 2

one <- function(model, data_name, data, formula, wcol, REML) {
  data$.w <- data[[wcol]]
  fit <- lmer(as.formula(formula), data = data, REML = REML, weights = .w)
  vc <- as.data.frame(VarCorr(fit))
  vc <- lapply(seq_len(nrow(vc)), function(i) {
    r <- list(grp = vc$grp[i], var1 = vc$var1[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])
    if (!is.na(vc$var2[i])) r$var2 <- vc$var2[i]
    r
  })
  lt <- summary(lmerTest::lmer(as.formula(formula), data = data, REML = REML, weights = .w))$coefficients
  list(model = model, data = data_name, formula = formula, weights_column = wcol, REML = REML,
       weights = data[[wcol]],
       criterion = if (REML) REMLcrit(fit) else deviance(fit),
       logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
       fixef = as.list(fixef(fit)), se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
       theta = unname(getME(fit, "theta")), sigma = sigma(fit), varcorr = vc,
       singular = isSingular(fit), nobs = nobs(fit), ngrps = as.list(ngrps(fit)),
       satterthwaite = list(names = I(rownames(lt)), df = I(unname(lt[, "df"])),
                            t = I(unname(lt[, "t value"])), p = I(unname(lt[, "Pr(>|t|)"]))),
       fitted = unname(fitted(fit)), residuals = unname(residuals(fit)),
       pearson = unname(residuals(fit, type = "pearson")))
}
cases <- list(
  list("sleep_slope_wdays", "sleepstudy", sleep, "Reaction ~ Days + (Days | Subject)", "w_days"),
  list("sleep_int_wsubj", "sleepstudy", sleep, "Reaction ~ Days + (1 | Subject)", "w_subj"),
  list("sleep_slope_wdays4", "sleepstudy", sleep, "Reaction ~ Days + (Days | Subject)", "w_days4"),
  list("sleep_slope_wna", "sleepstudy", sleep, "Reaction ~ Days + (Days | Subject)", "w_na"),
  list("penicillin_crossed_w", "Penicillin", pen, "diameter ~ 1 + (1 | plate) + (1 | sample)", "w")
)
out <- list()
for (cs in cases) for (reml in c(TRUE, FALSE)) {
  out[[length(out) + 1]] <- one(cs[[1]], cs[[2]], cs[[3]], cs[[4]], cs[[5]], reml)
}
# zero weights: lme4 1.1 keeps the rows, its criterion is -sum(log w) = Inf, and the
# optimizer stops at its start (an unoptimized fit): jaxlme raises an error instead
sleep$w_zero <- sleep$w_days; sleep$w_zero[c(1, 15, 40)] <- 0
zfit <- suppressWarnings(lmer(Reaction ~ Days + (Days | Subject), data = sleep, weights = w_zero))
zero <- list(weights = sleep$w_zero, criterion_infinite = is.infinite(REMLcrit(zfit)),
             theta = unname(getME(zfit, "theta")), nobs = nobs(zfit))
# profile intervals and conditional SDs of the random effects for one weighted fit
sleep$.w <- sleep$w_days
pfit <- lmer(Reaction ~ Days + (Days | Subject), data = sleep, weights = .w)
cc <- suppressWarnings(suppressMessages(confint(pfit, method = "profile", level = 0.95, oldNames = FALSE)))
pv <- attr(ranef(pfit, condVar = TRUE)$Subject, "postVar")
# lme4 1.1's profile() of a weighted fit's fixed effects is wrong ("non-monotonic
# profile", an interval far narrower than Wald's): the fixed-effect rows are recomputed
# here from their definition, the ML deviance with β_j held fixed through an offset
mlfit <- lmer(Reaction ~ Days + (Days | Subject), data = sleep, weights = .w, REML = FALSE)
dev0 <- deviance(mlfit); crit <- qchisq(0.95, 1)
prof_dev <- function(j, b) {
  sleep$.off <- b * (if (j == "(Intercept)") 1 else sleep$Days)
  f <- if (j == "(Intercept)") Reaction ~ 0 + Days + (Days | Subject) else Reaction ~ 1 + (Days | Subject)
  deviance(lmer(f, data = sleep, weights = .w, REML = FALSE, offset = .off)) - dev0 - crit
}
fix_lo <- fix_hi <- c()
for (j in names(fixef(mlfit))) {
  est <- fixef(mlfit)[[j]]; se <- sqrt(diag(as.matrix(vcov(mlfit))))[[j]]
  fix_lo[j] <- uniroot(function(b) prof_dev(j, b), c(est - 4 * se, est), tol = 1e-8)$root
  fix_hi[j] <- uniroot(function(b) prof_dev(j, b), c(est, est + 4 * se), tol = 1e-8)$root
}
extra <- list(model = "sleep_slope_wdays", REML = TRUE,
              confint = list(rows = rownames(cc), lower = unname(cc[, 1]), upper = unname(cc[, 2])),
              fixef_profile = list(rows = names(fix_lo), lower = unname(fix_lo), upper = unname(fix_hi)),
              condsd = list(intercept = sqrt(pv[1, 1, ]), Days = sqrt(pv[2, 2, ])))
writeLines(toJSON(list(fits = out, zero_weights = zero, profile = extra), auto_unbox = TRUE, digits = NA, pretty = FALSE,
                  na = "null"),
           "tests/data/lme4_weights_reference.json")
cat("wrote", length(out), "fits\n")
