# lme4 1.1-31 glmer reference fits for tests/test_glmm*.py.
# Run from the repository root: Rscript tests/data/make_glmm_reference.R
# Writes tests/data/glmm_reference.json and the data sets it fits (cbpp.csv,
# grouseticks.csv, glmm_poisson_offset.csv, glmm_accuracy.csv).
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
stopifnot(packageVersion("lme4") == "1.1.31")
out_dir <- "tests/data"

data(cbpp, package = "lme4")
cbpp_out <- data.frame(herd = as.character(cbpp$herd), incidence = cbpp$incidence,
                       size = cbpp$size, period = as.character(cbpp$period))
write.csv(cbpp_out, file.path(out_dir, "cbpp.csv"), row.names = FALSE)

data(grouseticks, package = "lme4")
gt <- data.frame(INDEX = as.character(grouseticks$INDEX), TICKS = grouseticks$TICKS,
                 BROOD = as.character(grouseticks$BROOD), HEIGHT = grouseticks$HEIGHT,
                 YEAR = as.character(grouseticks$YEAR), LOCATION = as.character(grouseticks$LOCATION))
gt$cHEIGHT <- gt$HEIGHT - mean(gt$HEIGHT)
write.csv(gt, file.path(out_dir, "grouseticks.csv"), row.names = FALSE)

# Poisson counts with an exposure: events ~ x + offset(log(exposure)) + (1 | site)
set.seed(20261201)
nsite <- 40; per <- 8
site <- rep(sprintf("s%02d", 1:nsite), each = per)
x <- round(rnorm(nsite * per), 3)
exposure <- round(runif(nsite * per, 0.5, 5), 2)
b <- rnorm(nsite, 0, 0.6)[rep(1:nsite, each = per)]
events <- rpois(nsite * per, exposure * exp(-0.3 + 0.4 * x + b))
pois <- data.frame(site = site, x = x, exposure = exposure, events = events)
write.csv(pois, file.path(out_dir, "glmm_poisson_offset.csv"), row.names = FALSE)

# 0/1 accuracy, subjects x items crossed, random slope of condition by subject
set.seed(20261202)
nsubj <- 30; nitem <- 20
d <- expand.grid(item = sprintf("i%02d", 1:nitem), subj = sprintf("p%02d", 1:nsubj), stringsAsFactors = FALSE)
d$cond <- ifelse((match(d$item, unique(d$item)) + match(d$subj, unique(d$subj))) %% 2 == 0, -0.5, 0.5)
s0 <- rnorm(nsubj, 0, 0.8); s1 <- rnorm(nsubj, 0, 0.5); i0 <- rnorm(nitem, 0, 0.6)
si <- match(d$subj, unique(d$subj)); ii <- match(d$item, unique(d$item))
eta <- 0.8 + 0.6 * d$cond + s0[si] + s1[si] * d$cond + i0[ii]
d$acc <- rbinom(nrow(d), 1, plogis(eta))
acc <- d[, c("subj", "item", "cond", "acc")]
write.csv(acc, file.path(out_dir, "glmm_accuracy.csv"), row.names = FALSE)

# a boundary (singular) fit: no group variance in the simulation
set.seed(20261203)
sg <- data.frame(g = sprintf("g%02d", rep(1:20, each = 10)), x = round(rnorm(200), 3))
sg$y <- rbinom(200, 1, plogis(-0.2 + 0.7 * sg$x))
write.csv(sg, file.path(out_dir, "glmm_singular.csv"), row.names = FALSE)

summ <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  s <- summary(fit)
  list(
    formula = deparse(formula(fit), width.cutoff = 500L),
    family = family(fit)$family, link = family(fit)$link,
    nAGQ = fit@devcomp$dims[["nAGQ"]],
    fixef = as.list(fixef(fit)),
    se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
    vcov = unname(as.matrix(vcov(fit))),
    z = as.list(coef(s)[, 3]), p = as.list(coef(s)[, 4]),
    theta = unname(getME(fit, "theta")),
    varcorr = list(grp = vc$grp, var1 = ifelse(is.na(vc$var1), "", vc$var1),
                   var2 = ifelse(is.na(vc$var2), "", vc$var2), sdcor = vc$sdcor),
    logLik = as.numeric(logLik(fit)), deviance_m2ll = -2 * as.numeric(logLik(fit)),
    deviance = deviance(fit), cmp = as.list(fit@devcomp$cmp), optpar = unname(fit@optinfo$val),
    AIC = AIC(fit), BIC = BIC(fit), nobs = nobs(fit), df_resid = df.residual(fit),
    singular = isSingular(fit),
    fitted = unname(fitted(fit)),
    eta = unname(predict(fit, type = "link")),
    ranef = lapply(ranef(fit), function(r) list(levels = rownames(r), values = lapply(as.list(r), unname))),
    scaled_resid = unname(quantile(residuals(fit, "pearson", scaled = TRUE))),
    summary = paste(capture.output(print(s)), collapse = "\n")
  )
}

# Each model twice: lme4's defaults, and with PIRLS converged tightly (tolPwrss = 1e-12).
# With the default tolerance (1e-7 on the relative change of the penalized deviance) the
# Laplace criterion lme4 optimizes carries PIRLS' convergence error (log|L|^2 of cbpp is
# 5.6e-4 off at lme4's own optimum), which moves the optimum by ~1e-4 and the
# finite-difference Hessian behind vcov() by up to 1.1%; the tight fits are the exact
# criterion's optimum, which jaxlme computes.  Tests compare with "<name>" (tight) and check
# that jaxlme's criterion is no higher than "<name>_default"'s.
tight <- glmerControl(tolPwrss = 1e-12)
both <- function(name, fit) {
  fits[[paste0(name, "_default")]] <<- fit
  fits[[name]] <<- update(fit, control = tight)
}
fits <- list()
both("cbpp", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial))
both("cbpp_prop", glmer(incidence / size ~ period + (1 | herd), cbpp, binomial, weights = size))
both("cbpp_probit", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial(link = "probit")))
both("cbpp_cloglog", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial(link = "cloglog")))
both("cbpp_agq9", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 9))
both("cbpp_agq10", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 10))
both("cbpp_nagq0", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 0))
both("grouseticks", glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), gt, poisson))
both("poisson_offset", glmer(events ~ x + offset(log(exposure)) + (1 | site), pois, poisson))
both("poisson_offset_agq5", glmer(events ~ x + offset(log(exposure)) + (1 | site), pois, poisson, nAGQ = 5))
# an all-0 group: herds 1 and 3 with no incidence (lme4 fits it; the herds' modes are negative)
cbpp0 <- cbpp; cbpp0$incidence[cbpp0$herd %in% c("1", "3")] <- 0
both("cbpp_zero_herds", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp0, binomial))
both("singular", glmer(y ~ x + (1 | g), sg, binomial))
both("accuracy", glmer(acc ~ cond + (1 + cond | subj) + (1 | item), acc, binomial))

# newdata predictions for cbpp (a new herd level with allow.new.levels)
nd <- data.frame(herd = c("1", "2", "99"), period = c("1", "4", "2"))
nd$herd <- factor(nd$herd); nd$period <- factor(nd$period, levels = levels(cbpp$period))
pred <- list(
  link = unname(predict(fits$cbpp, newdata = nd, type = "link", allow.new.levels = TRUE)),
  response = unname(predict(fits$cbpp, newdata = nd, type = "response", allow.new.levels = TRUE)),
  population = unname(predict(fits$cbpp, newdata = nd, re.form = NA, type = "response"))
)

# likelihood-ratio test of period (anova of two glmer fits)
null <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, binomial, control = tight)
av <- anova(null, fits$cbpp)
lrt <- list(npar = av$npar, AIC = av$AIC, BIC = av$BIC, logLik = av$logLik, deviance = av$deviance,
            Chisq = av$Chisq, Df = av$Df, p = av[["Pr(>Chisq)"]])

res <- lapply(fits, summ)
res$cbpp_lrt <- lrt
res$cbpp_predict <- pred
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out_dir, "glmm_reference.json"))
cat("wrote", file.path(out_dir, "glmm_reference.json"), "\n")
