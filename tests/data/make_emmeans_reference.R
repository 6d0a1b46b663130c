## Reference numbers for tests/test_emmeans.py: estimated marginal means and contrasts (emmeans).
## Run from the repository root:  Rscript tests/data/make_emmeans_reference.R
## Reads tests/data/emmeans_bounce_time.csv (jaxlme.datasets.load("bounce_time") written out),
## writes the other emmeans_*.csv data sets it simulates or copies from lme4 and
## tests/data/emmeans_reference.json (the tests do not need R).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(emmeans)
  library(jsonlite)
})
emm_options(lmerTest.limit = 1e6, pbkrtest.limit = 1e6)
path <- function(f) file.path("tests", "data", f)

## --- data --------------------------------------------------------------------------------
data(cake, package = "lme4")
cake <- data.frame(replicate = as.integer(as.character(cake$replicate)), recipe = as.character(cake$recipe),
                   temperature = as.character(cake$temperature), angle = cake$angle, temp = cake$temp)
write.csv(cake, path("emmeans_cake.csv"), row.names = FALSE)

## unbalanced crossed design: 4 unequally used treatments (labels with "-" and "+"),
## a two-level factor, a covariate, a 0/1 covariate (emmeans keeps both of its values)
set.seed(20261130)
n <- 400
g1 <- sample(30, n, replace = TRUE)
g2 <- sample(20, n, replace = TRUE)
trt <- sample(c("ctrl", "lo-dose", "hi-dose", "dose+x"), n, replace = TRUE, prob = c(0.4, 0.3, 0.2, 0.1))
sex <- sample(c("F", "M"), n, replace = TRUE, prob = c(0.65, 0.35))
x <- rnorm(n, 3, 1.5)
z <- rbinom(n, 1, 0.3)
eff <- c(ctrl = 0, "lo-dose" = 0.5, "hi-dose" = 1.2, "dose+x" = 0.8)
y <- 10 + eff[trt] + 0.4 * (sex == "M") + 0.3 * (trt == "hi-dose") * (sex == "M") + 0.25 * x - 0.5 * z +
  rnorm(30, 0, 0.7)[g1] + rnorm(20, 0, 0.5)[g2] + rnorm(n)
crossed <- data.frame(y = unname(y), trt = trt, sex = sex, x = x, z = z, g1 = paste0("s", g1), g2 = paste0("i", g2))
write.csv(crossed, path("emmeans_crossed.csv"), row.names = FALSE)

## a singular fit: no group-level variance at all
set.seed(7)
ns <- 90
sing <- data.frame(f = rep(c("a", "b", "c"), 30), g = rep(paste0("g", 1:10), each = 9), x = rnorm(ns))
sing$y <- 1 + c(a = 0, b = 0.6, c = -0.3)[sing$f] + 0.5 * sing$x + rnorm(ns)
sing$y <- unname(sing$y)
sing$b <- sing$x > 0.3  # a logical column: emmeans takes it as a factor (FALSE, TRUE)
write.csv(sing, path("emmeans_singular.csv"), row.names = FALSE)

read <- function(f, str_cols = character(0)) {
  d <- read.csv(path(f), stringsAsFactors = TRUE)
  for (c in str_cols) d[[c]] <- factor(as.character(d[[c]]))
  d
}

## --- cases: each fit, then emmeans() calls and contrasts of each ------------------------
## a contrast: list(method = "pairwise" | "trt.vs.ctrl" | "revpairwise" | list(name = coefs),
##                  adjust = NULL (emmeans' default) or a method, ref = level index (1-based) or NULL)
con <- function(method, adjust = NULL, ref = NULL) list(method = method, adjust = adjust, ref = ref)
emm <- function(specs, by = NULL, at = NULL, ddf = "satterthwaite", level = 0.95, contrasts = list())
  list(specs = specs, by = by, at = at, ddf = ddf, level = level, contrasts = contrasts)

cases <- list(
  list(name = "bounce_time", csv = "emmeans_bounce_time.csv", str_cols = character(0), reml = TRUE,
       formula = "bounce_time ~ location + age_scaled + (1 | county)",
       emmeans = list(
         emm("location", contrasts = list(
           con("pairwise"), con("trt.vs.ctrl"), con("revpairwise", "holm"),
           con(list("loc_0 - avg" = c(1, -0.5, -0.5), "loc_1 - loc_2" = c(0, 1, -1)), "none"),
           con(list("loc_0 - avg" = c(1, -0.5, -0.5), "loc_1 - loc_2" = c(0, 1, -1))))),
         emm("location", ddf = "asymptotic", level = 0.9, contrasts = list(con("pairwise"), con("pairwise", "bonferroni"))),
         emm("location", ddf = "kenward-roger", contrasts = list(con("pairwise"), con("trt.vs.ctrl"))))),
  list(name = "bounce_poly", csv = "emmeans_bounce_time.csv", str_cols = character(0), reml = TRUE,
       formula = "bounce_time ~ location * poly(age, 2) + (1 | county)",
       emmeans = list(
         emm("location", contrasts = list(con("pairwise"))),
         emm("location", by = "age", at = list(age = c(30, 40)), contrasts = list(con("pairwise", "holm"))),
         emm("location", ddf = "kenward-roger", contrasts = list(con("revpairwise"))))),
  list(name = "bounce_scale", csv = "emmeans_bounce_time.csv", str_cols = character(0), reml = FALSE,
       formula = "bounce_time ~ location * scale(age) + I(age^2) + (1 | county)",
       emmeans = list(
         emm("location", contrasts = list(con("pairwise", "bonferroni"), con("trt.vs.ctrl", "sidak", ref = 2))))),
  list(name = "cake", csv = "emmeans_cake.csv", str_cols = c("temperature"), reml = TRUE,
       formula = "angle ~ recipe * temperature + (1 | recipe:replicate)",
       emmeans = list(
         emm("recipe", contrasts = list(con("pairwise"), con("pairwise", "none"))),
         emm("temperature", contrasts = list(con("trt.vs.ctrl"), con("trt.vs.ctrl", ref = 3), con("pairwise", "holm"))),
         emm(c("recipe", "temperature"), contrasts = list(con("pairwise"))),
         emm("temperature", by = "recipe", contrasts = list(con("pairwise"), con("revpairwise", "bonferroni"))),
         emm("recipe", by = "temperature", contrasts = list(
           con(list("A - B" = c(1, -1, 0), "C - avg(A,B)" = c(-0.5, -0.5, 1))),
           con(list("A - B" = c(1, -1, 0), "C - avg(A,B)" = c(-0.5, -0.5, 1)), "holm"))),
         emm("temperature", at = list(temperature = c("175", "205", "225")), contrasts = list(con("pairwise"))),
         emm("recipe", ddf = "kenward-roger", contrasts = list(con("pairwise"))),
         emm("temperature", by = "recipe", ddf = "kenward-roger", contrasts = list(con("pairwise", "holm"))))),
  list(name = "cake_factor_call", csv = "emmeans_cake.csv", str_cols = character(0), reml = TRUE,
       formula = "angle ~ recipe + factor(temp) + (1 | replicate)",
       emmeans = list(emm("temp", level = 0.99, contrasts = list(con("trt.vs.ctrl"), con("pairwise", "sidak"))))),
  list(name = "crossed_unbalanced", csv = "emmeans_crossed.csv", str_cols = character(0), reml = FALSE,
       formula = "y ~ trt * sex + x + z + (1 | g1) + (1 | g2)",
       emmeans = list(
         emm("trt", contrasts = list(con("pairwise"), con("trt.vs.ctrl"), con("pairwise", "sidak"),
                                     con("pairwise", "hochberg"), con("trt.vs.ctrl", "BH"), con("pairwise", "BY"),
                                     con("revpairwise", "fdr"))),
         emm("trt", by = "sex", contrasts = list(con("pairwise"), con("trt.vs.ctrl", "holm"), con("pairwise", "BH"))),
         emm("sex", at = list(x = 2.5), contrasts = list(con("revpairwise"))),
         emm(c("trt", "sex"), ddf = "asymptotic", contrasts = list(con("pairwise"))))),
  list(name = "singular", csv = "emmeans_singular.csv", str_cols = character(0), reml = TRUE,
       formula = "y ~ f + x + (1 | g)",
       emmeans = list(
         emm("f", contrasts = list(con("pairwise"), con("trt.vs.ctrl", ref = 2), con("pairwise", "none"))),
         emm("f", ddf = "kenward-roger", contrasts = list(con("pairwise"))))),
  list(name = "logical_factor", csv = "emmeans_singular.csv", str_cols = character(0), reml = TRUE,
       formula = "y ~ f * b + x + (1 | g)",
       emmeans = list(
         emm("b", contrasts = list(con("pairwise"))),
         emm("f", by = "b", contrasts = list(con("trt.vs.ctrl")))))
)

table_of <- function(df) {
  out <- list()
  for (nm in names(df)) out[[nm]] <- if (is.factor(df[[nm]])) as.character(df[[nm]]) else df[[nm]]
  out
}

results <- list()
for (cs in cases) {
  dat <- read(cs$csv, cs$str_cols)
  fit <- lme4::lmer(as.formula(cs$formula), data = dat, REML = cs$reml)
  cat(cs$name, "singular:", isSingular(fit), "\n")
  calls <- list()
  for (e in cs$emmeans) {
    args <- list(fit, specs = e$specs, lmer.df = e$ddf, level = e$level)
    if (!is.null(e$by)) args$by <- e$by
    if (!is.null(e$at)) args$at <- e$at
    g <- do.call(emmeans, args)
    emm_tab <- as.data.frame(summary(g, level = e$level))
    cons <- list()
    for (k in e$contrasts) {
      cargs <- list(g, method = k$method)
      if (!is.null(k$adjust)) cargs$adjust <- k$adjust
      if (!is.null(k$ref)) cargs$ref <- k$ref
      cg <- do.call(contrast, cargs)
      ctab <- as.data.frame(summary(cg, infer = c(TRUE, TRUE), level = e$level))
      cons[[length(cons) + 1]] <- list(
        method = if (is.list(k$method)) "custom" else k$method,
        custom = if (is.list(k$method)) k$method else NULL,
        adjust = k$adjust, ref = k$ref, adjust_used = cg@misc$adjust, table = table_of(ctab))
    }
    calls[[length(calls) + 1]] <- list(
      specs = e$specs, by = e$by, at = e$at, ddf = e$ddf, level = e$level,
      table = table_of(emm_tab), contrasts = cons)
  }
  results[[length(results) + 1]] <- list(
    name = cs$name, csv = cs$csv, str_cols = cs$str_cols, formula = cs$formula, reml = cs$reml,
    singular = isSingular(fit), fixef = as.list(fixef(fit)), emmeans = calls)
}
out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest")),
                            emmeans = as.character(packageVersion("emmeans"))),
            cases = results)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "string", pretty = TRUE),
           path("emmeans_reference.json"))
