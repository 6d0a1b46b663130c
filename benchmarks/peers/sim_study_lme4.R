# lme4 side of benchmarks/sim_study.py: fit every simulated design with lme4 (maxfun = 1e5).
#
# Usage: Rscript sim_study_lme4.R DESIGNS.json DATA_DIR OUT.json
# DESIGNS.json lists {family, formula, csv}; each CSV holds all replicates of one family
# (column `rep`).  Writes one JSON array of {family, rep, REML, criterion, theta, seconds}.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
families <- fromJSON(args[1], simplifyVector = FALSE)
ctrl <- lmerControl(optCtrl = list(maxfun = 1e5), calc.derivs = FALSE,
                    check.conv.singular = "ignore")
out <- list()
for (fam in families) {
  d <- read.csv(file.path(args[2], fam$csv), stringsAsFactors = TRUE)
  for (col in names(d)) if (col %in% c("g", "a", "b", "f")) d[[col]] <- factor(d[[col]])
  for (r in sort(unique(d$rep))) {
    dr <- droplevels(d[d$rep == r, ])
    for (reml in c(TRUE, FALSE)) {
      t0 <- proc.time()[["elapsed"]]
      fit <- tryCatch(suppressWarnings(suppressMessages(
        lmer(as.formula(fam$formula), dr, REML = reml, control = ctrl))), error = function(e) NULL)
      secs <- proc.time()[["elapsed"]] - t0
      out[[length(out) + 1]] <- if (is.null(fit)) {
        list(family = fam$family, rep = r, REML = reml, criterion = NA, theta = list(), seconds = secs)
      } else {
        list(family = fam$family, rep = r, REML = reml,
             criterion = if (reml) REMLcrit(fit) else deviance(fit),
             theta = unname(getME(fit, "theta")), seconds = secs)
      }
    }
  }
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), args[3])
