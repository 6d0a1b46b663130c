# lme4 1.1-31 glmer fit of a large nested binomial model (450 units x 4 sub-units), whose
# rest block jaxlme factors block by block (Layout.lead_blocks), for tests/test_glmm_reference.py.
# Run from the repository root: Rscript tests/data/make_glmm_nested_reference.R
# Writes tests/data/glmm_nested.csv and tests/data/glmm_nested_reference.json.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
stopifnot(packageVersion("lme4") == "1.1.31")
out_dir <- "tests/data"
set.seed(20261201)
na <- 450; nb <- 4; nobs <- 3
d <- expand.grid(rep = seq_len(nobs), b = seq_len(nb), a = seq_len(na))
d$a <- sprintf("a%03d", d$a); d$b <- sprintf("b%d", d$b)
d$x <- round(rnorm(nrow(d)), 3)
ua <- rnorm(na); uab <- rnorm(na * nb, sd = 0.6)
eta <- -0.3 + 0.8 * d$x + ua[match(d$a, sort(unique(d$a)))] + uab[match(paste(d$a, d$b), sort(unique(paste(d$a, d$b))))]
d$y <- rbinom(nrow(d), 1, plogis(eta))
d <- d[, c("a", "b", "x", "y")]
write.csv(d, file.path(out_dir, "glmm_nested.csv"), row.names = FALSE)

summ <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  list(
    nAGQ = fit@devcomp$dims[["nAGQ"]],
    fixef = as.list(fixef(fit)),
    se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
    theta = unname(getME(fit, "theta")),
    varcorr = list(grp = vc$grp, sdcor = vc$sdcor),
    logLik = as.numeric(logLik(fit)), cmp = as.list(fit@devcomp$cmp),
    AIC = AIC(fit), BIC = BIC(fit), nobs = nobs(fit), df_resid = df.residual(fit),
    singular = isSingular(fit)
  )
}
# as make_glmm_reference.R: lme4's defaults, and PIRLS converged tightly (the exact criterion)
fit <- glmer(y ~ x + (1 | a) + (1 | a:b), d, binomial)
out <- list(nested_default = summ(fit), nested = summ(update(fit, control = glmerControl(tolPwrss = 1e-12))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out_dir, "glmm_nested_reference.json"))
