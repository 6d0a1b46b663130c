# glmer timings for benchmarks/bench_glmm.py: Rscript glmm_bench.R DATA_DIR BIG_CSV REPS NBOOT
# Prints one JSON line per case: median and all wall times of glmer (and bootMer) fits.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; big_csv <- args[2]; reps <- as.integer(args[3]); nboot <- as.integer(args[4])
cbpp <- read.csv(file.path(dir, "cbpp.csv"), colClasses = c(herd = "character", period = "character"))
gt <- read.csv(file.path(dir, "grouseticks.csv"), colClasses = c(INDEX = "character", BROOD = "character",
                                                                YEAR = "character", LOCATION = "character"))
pois <- read.csv(file.path(dir, "glmm_poisson_offset.csv"))
acc <- read.csv(file.path(dir, "glmm_accuracy.csv"))
big <- read.csv(big_csv, colClasses = c(subj = "character", item = "character"))
time_it <- function(expr) {
  ts <- numeric(reps)
  for (i in seq_len(reps)) ts[i] <- system.time(fit <- eval(expr))[["elapsed"]]
  list(median = median(ts), times = ts, dev = -2 * as.numeric(logLik(fit)))
}
cases <- list(
  cbpp = quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)),
  cbpp_agq10 = quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 10)),
  poisson_offset = quote(glmer(events ~ x + offset(log(exposure)) + (1 | site), pois, poisson)),
  grouseticks = quote(glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), gt, poisson)),
  accuracy = quote(glmer(acc ~ cond + (1 + cond | subj) + (1 | item), acc, binomial)),
  crossed_1e5 = quote(glmer(acc ~ cond + (1 | subj) + (1 | item), big, binomial))
)
for (nm in names(cases)) {
  r <- time_it(cases[[nm]])
  cat(toJSON(list(case = nm, median = r$median, times = r$times, deviance = r$dev), auto_unbox = TRUE, digits = NA), "\n")
}
fit <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)
t <- system.time(b <- bootMer(fit, fixef, nsim = nboot, seed = 1))[["elapsed"]]
cat(toJSON(list(case = "bootMer_cbpp", n = nboot, seconds = t), auto_unbox = TRUE, digits = NA), "\n")
