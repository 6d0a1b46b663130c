## Reference numbers for tests/test_plots.py: R's qqnorm/qqline of lme4's scaled residuals.
## Run from the repository root:  Rscript tests/data/make_plots_reference.R
## Writes tests/data/plots_reference.json (the tests do not need R).
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
sleep <- read.csv(file.path("jaxlme", "data", "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)
fit <- lmer(Reaction ~ Days + (Days | Subject), data = sleep)
e <- residuals(fit, scaled = TRUE)
qn <- qqnorm(e, plot.it = FALSE)
## qqline's line: through the quartiles (quantile type 7) of the sample and of N(0, 1)
y <- quantile(e, c(0.25, 0.75), names = FALSE, type = 7)
x <- qnorm(c(0.25, 0.75))
slope <- diff(y) / diff(x)
o <- order(qn$x)
out <- list(
  lme4 = as.character(packageVersion("lme4")),
  qqline = list(intercept = y[1L] - slope * x[1L], slope = slope),
  qqnorm_x = qn$x[o], qqnorm_y = qn$y[o],
  ppoints_7 = ppoints(7), ppoints_25 = ppoints(25)
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = FALSE), file.path("tests", "data", "plots_reference.json"))
