## Per-replicate reference for tests/test_lrt_bootstrap.py: pbkrtest's LRT* of given responses.
## Run from the repository root:  Rscript tests/data/make_pbmodcomp_replicates_reference.R
## Writes tests/data/pbmodcomp_replicates.json: responses simulated from the small model's ML
## fit (lme4's simulate) and, for each, pbkrtest's statistic (its .get_refdist_merMod, which
## refits both models by ML with lme4's refit) and both ML deviances.  jaxlme refits the same
## responses, so the comparison is exact rather than within Monte-Carlo error.
suppressPackageStartupMessages({
  library(lme4)
  library(pbkrtest)
  library(jsonlite)
})
dat <- function(name) read.csv(file.path("tests", "data", paste0(name, ".csv")), stringsAsFactors = TRUE)
sleep <- dat("sleepstudy"); sleep$Subject <- factor(sleep$Subject)
datasets <- list(sleepstudy = sleep, Pastes = dat("Pastes"))
cases <- list(
  list(name = "pastes_batch", data = "Pastes", nsim = 40,
       small = "strength ~ 1 + (1|sample)", large = "strength ~ 1 + (1|sample) + (1|batch)"),
  list(name = "sleep_uncorr_vs_corr", data = "sleepstudy", nsim = 20,
       small = "Reaction ~ Days + (1|Subject) + (0+Days|Subject)", large = "Reaction ~ Days + (Days|Subject)")
)
out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            pbkrtest = as.character(packageVersion("pbkrtest"))), cases = list())
for (i in seq_along(cases)) {
  cs <- cases[[i]]
  d <- datasets[[cs$data]]
  small <- lmer(as.formula(cs$small), data = d, REML = FALSE)
  large <- lmer(as.formula(cs$large), data = d, REML = FALSE)
  sims <- simulate(small, nsim = cs$nsim, seed = 100 + i)
  ref <- pbkrtest:::.get_refdist_merMod(large, small, simdata = sims)
  dev <- t(sapply(sims, function(y) c(deviance(suppressMessages(refit(small, newresp = y))),
                                      deviance(suppressMessages(refit(large, newresp = y))))))
  out$cases[[i]] <- list(name = cs$name, data = cs$data, small = cs$small, large = cs$large,
                         responses = unname(lapply(sims, as.numeric)), lrt = ref,
                         deviance_small = dev[, 1], deviance_large = dev[, 2])
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), file.path("tests", "data", "pbmodcomp_replicates.json"))
