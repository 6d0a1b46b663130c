## Reference numbers for tests/test_lrt_bootstrap.py: pbkrtest's parametric-bootstrap LRT.
## Run from the repository root:  Rscript tests/data/make_pbmodcomp_reference.R
## Writes tests/data/pbmodcomp_reference.json (the tests do not need R).
## pbkrtest::PBmodcomp(large, small, nsim) simulates nsim responses from the ML fit of the
## small model, refits both models by ML, LRT* = 2 (logLik(large*) - logLik(small*)), and
## reports p.PB = (1 + #{LRT_obs < LRT*, LRT* > 0}) / (1 + #{LRT* > 0}) (.finalizePB).
## We also store p with LRT* below 1e-6 counted as zero (refits that meet at the same
## boundary optimum differ only by rounding, ~1e-13, of either sign) and ref quantiles.
suppressPackageStartupMessages({
  library(lme4)
  library(pbkrtest)
  library(jsonlite)
})
dat <- function(name) read.csv(file.path("tests", "data", paste0(name, ".csv")), stringsAsFactors = TRUE)
sleep <- dat("sleepstudy"); sleep$Subject <- factor(sleep$Subject)
pas <- dat("Pastes")
datasets <- list(sleepstudy = sleep, Pastes = pas)
NSIM <- 4000
ZERO <- 1e-6

cases <- list(
  list(name = "sleep_int_vs_slope", data = "sleepstudy",
       small = "Reaction ~ Days + (1|Subject)", large = "Reaction ~ Days + (Days|Subject)"),
  list(name = "sleep_uncorr_vs_corr", data = "sleepstudy",
       small = "Reaction ~ Days + (1|Subject) + (0+Days|Subject)", large = "Reaction ~ Days + (Days|Subject)"),
  list(name = "pastes_batch", data = "Pastes",
       small = "strength ~ 1 + (1|sample)", large = "strength ~ 1 + (1|sample) + (1|batch)")
)
out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            pbkrtest = as.character(packageVersion("pbkrtest"))),
            nsim = NSIM, zero_tol = ZERO, cases = list())
for (i in seq_along(cases)) {
  cs <- cases[[i]]
  d <- datasets[[cs$data]]
  small <- lmer(as.formula(cs$small), data = d, REML = FALSE)
  large <- lmer(as.formula(cs$large), data = d, REML = FALSE)
  set.seed(20261130 + i)
  ref <- suppressWarnings(PBrefdist(large, small, nsim = NSIM, cl = NULL))
  pb <- PBmodcomp(large, small, ref = ref)
  t <- pb$test
  tobs <- t["LRT", "stat"]
  refpos_tol <- ref[ref > ZERO]
  out$cases[[i]] <- list(
    name = cs$name, data = cs$data, small = cs$small, large = cs$large,
    logLik_small = as.numeric(logLik(small)), logLik_large = as.numeric(logLik(large)),
    stat = tobs, df = t["LRT", "df"], p_chisq = t["LRT", "p.value"], p_pb = t["PBtest", "p.value"],
    nsim = length(ref), npos = sum(ref > 0), n_extreme = sum(tobs < ref[ref > 0]),
    npos_tol = length(refpos_tol), p_pb_tol = (1 + sum(tobs < refpos_tol)) / (1 + length(refpos_tol)),
    frac_le_tol = mean(ref <= ZERO),
    ref_quantiles = as.list(setNames(quantile(ref, c(0.5, 0.75, 0.9, 0.95, 0.99), names = FALSE),
                                     c("q50", "q75", "q90", "q95", "q99"))),
    seconds = unname(attr(ref, "ctime"))
  )
  cat(cs$name, ": stat", tobs, "p_pb", t["PBtest", "p.value"], "p_pb_tol", out$cases[[i]]$p_pb_tol,
      "npos", out$cases[[i]]$npos, "npos_tol", length(refpos_tol), "\n")
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path("tests", "data", "pbmodcomp_reference.json"))
