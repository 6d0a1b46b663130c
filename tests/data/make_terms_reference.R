# lme4 reference fits for a grouping factor in several random-effects terms (issue #15).
# Run from the repository root:  Rscript tests/data/make_terms_reference.R
# Writes tests/data/terms_crossed.csv (a small simulated crossed design) and
# tests/data/lme4_terms_reference.json: the layout of lme4_extra_reference.json plus
# "ranef" (as.data.frame(ranef(fit, condVar = TRUE)) rows), "fitted", lmerTest's
# Satterthwaite df ("df") and, where asked, profile intervals ("profile", lme4's .sig01 names).
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
sleep <- read.csv("jaxlme/data/sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
sleep$Days2 <- sleep$Days^2 / 10

set.seed(15)
crossed <- expand.grid(subj = sprintf("s%02d", 1:16), item = sprintf("i%02d", 1:10), stringsAsFactors = FALSE)
crossed$x <- round(rnorm(nrow(crossed)), 3)
u_s <- rnorm(16, 0, 1); u_i <- rnorm(10, 0, 0.7); v_s <- rnorm(16, 0, 0.5); v_i <- rnorm(10, 0, 0.4)
s <- match(crossed$subj, sprintf("s%02d", 1:16)); i <- match(crossed$item, sprintf("i%02d", 1:10))
crossed$y <- round(2 + 0.5 * crossed$x + u_s[s] + u_i[i] + (v_s[s] + v_i[i]) * crossed$x +
                   rnorm(nrow(crossed), 0, 0.8), 4)
write.csv(crossed, "tests/data/terms_crossed.csv", row.names = FALSE)
crossed$subj <- factor(crossed$subj); crossed$item <- factor(crossed$item)

one <- function(model, data_name, data, formula, REML, profile) {
  fit <- lmerTest::lmer(as.formula(formula), data = data, REML = REML)
  vc <- as.data.frame(VarCorr(fit))
  vc <- lapply(seq_len(nrow(vc)), function(i) {
    r <- list(grp = vc$grp[i], var1 = vc$var1[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])
    if (!is.na(vc$var2[i])) r$var2 <- vc$var2[i]
    r
  })
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  re <- lapply(seq_len(nrow(re)), function(i) list(grpvar = as.character(re$grpvar[i]),
    term = as.character(re$term[i]), grp = as.character(re$grp[i]), condval = re$condval[i], condsd = re$condsd[i]))
  cf <- summary(fit)$coefficients
  out <- list(model = model, data = data_name, formula = formula, REML = REML,
       criterion = if (REML) REMLcrit(fit) else deviance(fit),
       logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
       fixef = as.list(fixef(fit)), se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
       df = as.list(setNames(cf[, "df"], rownames(cf))),
       theta = unname(getME(fit, "theta")), sigma = sigma(fit), varcorr = vc,
       singular = isSingular(fit), nobs = nobs(fit), ngrps = as.list(ngrps(fit)),
       ranef = re, ranef_columns = lapply(ranef(fit), names), fitted = unname(fitted(fit)))
  if (profile) {
    ci <- confint(fit, method = "profile", oldNames = TRUE)
    out$profile <- list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
  }
  out
}
cases <- list(
  list("sleep_int_slope", "sleepstudy", sleep, "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", TRUE),
  list("sleep_zerocorr", "sleepstudy", sleep, "Reaction ~ Days + (Days || Subject)", FALSE),
  list("sleep_three", "sleepstudy", sleep,
       "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject) + (0 + Days2 | Subject)", FALSE),
  list("crossed_between", "terms_crossed", crossed, "y ~ x + (1 | subj) + (1 | item) + (0 + x | subj)", FALSE),
  list("crossed_fewer_twice", "terms_crossed", crossed, "y ~ x + (1 | item) + (1 | subj) + (0 + x | item)", FALSE),
  list("crossed_zerocorr", "terms_crossed", crossed, "y ~ x + (1 | item) + (x || subj)", FALSE)
)
out <- list()
for (cs in cases) for (reml in c(TRUE, FALSE)) {
  out[[length(out) + 1]] <- one(cs[[1]], cs[[2]], cs[[3]], cs[[4]], reml, cs[[5]] && reml)
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = FALSE), "tests/data/lme4_terms_reference.json")
cat("wrote", length(out), "fits\n")
