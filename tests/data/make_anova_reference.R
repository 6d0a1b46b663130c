# Reference numbers for tests/test_anova.py and tests/test_kenward_roger.py:
# lmerTest's anova() F tables (types I, II, III; Satterthwaite and Kenward-Roger) and
# pbkrtest's Kenward-Roger adjusted covariance and df for the coefficients, on six fits.
# Writes the data CSVs it simulates or exports, and anova_reference.json.
# Run from the repository root: Rscript tests/data/make_anova_reference.R
suppressMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})
stopifnot(packageVersion("lme4") == "1.1.31")
dir <- "tests/data"

# --- data -------------------------------------------------------------------------------
sleep <- read.csv(file.path(dir, "sleepstudy.csv"))
bounce <- read.csv(file.path(dir, "bounce_time.csv"))  # jaxlme.datasets.load("bounce_time")
bounce$county <- factor(bounce$county)
bounce$location <- factor(bounce$location)

data(cake, package = "lme4")
cake <- data.frame(replicate = paste0("r", as.integer(cake$replicate)), recipe = as.character(cake$recipe),
                   temperature = paste0("t", as.character(cake$temperature)), angle = cake$angle)
write.csv(cake, file.path(dir, "cake.csv"), row.names = FALSE)

set.seed(20261130)  # unbalanced crossed design: subjects x items, 3 x 2 fixed factors, covariate
ns <- 24; ni <- 16
g <- expand.grid(subj = sprintf("s%02d", 1:ns), item = sprintf("i%02d", 1:ni), stringsAsFactors = FALSE)
g$A <- c("a1", "a2", "a3")[(as.integer(factor(g$subj)) %% 3) + 1]
g$B <- c("b1", "b2")[(as.integer(factor(g$item)) %% 2) + 1]
g$x <- round(rnorm(nrow(g)), 4)
us <- rnorm(ns, 0, 0.8); ui <- rnorm(ni, 0, 0.5)
eff <- c(a1 = 0, a2 = 0.4, a3 = -0.3)[g$A] + c(b1 = 0, b2 = 0.5)[g$B] + 0.3 * (g$A == "a2" & g$B == "b2")
g$y <- round(1 + eff + 0.25 * g$x + us[as.integer(factor(g$subj))] + ui[as.integer(factor(g$item))] +
             rnorm(nrow(g)), 4)
keep <- runif(nrow(g)) > 0.3
crossed <- g[keep, c("y", "x", "A", "B", "subj", "item")]
write.csv(crossed, file.path(dir, "anova_crossed.csv"), row.names = FALSE)

set.seed(2)  # a singular fit: the group variance is estimated as exactly 0
sing <- data.frame(g = rep(sprintf("g%02d", 1:12), each = 6), f = rep(c("lo", "mid", "hi"), 24),
                   x = round(rnorm(72), 4))
sing$y <- round(2 + 0.5 * sing$x + c(lo = 0, mid = 0.3, hi = 0.8)[sing$f] + rnorm(72), 4)
write.csv(sing, file.path(dir, "anova_singular.csv"), row.names = FALSE)

# --- models -----------------------------------------------------------------------------
specs <- list(
  sleepstudy = list(data = "sleepstudy.csv", df = sleep, formula = "Reaction ~ Days + (Days | Subject)"),
  bounce = list(data = "bounce_time.csv", df = bounce, formula = "bounce_time ~ age_scaled + (1 | county)"),
  bounce_factor = list(data = "bounce_time.csv", df = bounce,
                       formula = "bounce_time ~ age_scaled + location + (1 | county)"),
  bounce_interaction = list(data = "bounce_time.csv", df = bounce,
                            formula = "bounce_time ~ age_scaled * location + (1 | county)"),
  bounce_transform = list(data = "bounce_time.csv", df = bounce,
                          formula = "bounce_time ~ log(age) * location + I(age_scaled^2) + (1 | county)"),
  cake = list(data = "cake.csv", df = cake, formula = "angle ~ recipe * temperature + (1 | recipe:replicate)"),
  crossed = list(data = "anova_crossed.csv", df = crossed, formula = "y ~ A * B + x + (1 | subj) + (1 | item)"),
  crossed_slope = list(data = "anova_crossed.csv", df = crossed,
                       formula = "y ~ x * B + A + (1 + x | subj) + (1 | item)"),
  no_intercept = list(data = "anova_crossed.csv", df = crossed, formula = "y ~ 0 + A + B + x + (1 | subj)"),
  singular = list(data = "anova_singular.csv", df = sing, formula = "y ~ x * f + (1 | g)")
)

table_json <- function(tab) {
  tab <- as.data.frame(tab)
  list(rows = rownames(tab), sum_sq = tab[["Sum Sq"]], mean_sq = tab[["Mean Sq"]], numdf = tab[["NumDF"]],
       dendf = tab[["DenDF"]], f = tab[["F value"]], p = tab[["Pr(>F)"]])
}

out <- list()
for (name in names(specs)) {
  s <- specs[[name]]
  m <- lmerTest::lmer(as.formula(s$formula), data = s$df, REML = TRUE)
  if (name == "singular") stopifnot(isSingular(m))
  co <- summary(m)$coefficients
  Va <- as.matrix(vcovAdj(m))
  p <- ncol(Va)
  kr_df <- sapply(seq_len(p), function(i) Lb_ddf(diag(p)[i, ], vcov(m), vcovAdj(m)))
  an <- list()
  for (ddf in c("Satterthwaite", "Kenward-Roger")) {
    key <- tolower(ddf)
    an[[key]] <- list()
    for (type in c("1", "2", "3")) {
      an[[key]][[type]] <- table_json(anova(m, type = type, ddf = ddf))
    }
  }
  out[[name]] <- list(
    data = s$data, formula = s$formula, theta = unname(getME(m, "theta")), sigma = sigma(m),
    reml_crit = unname(REMLcrit(m)), singular = isSingular(m), coef_names = rownames(co),
    estimate = unname(co[, "Estimate"]), se = unname(co[, "Std. Error"]), satt_df = unname(co[, "df"]),
    kr_se = unname(sqrt(diag(Va))), kr_df = unname(kr_df), kr_vcov = unname(Va), anova = an
  )
}

# multi-row contrasts through contestMD (f_test) on the cake fit
m <- lmerTest::lmer(as.formula(specs$cake$formula), data = cake, REML = TRUE)
L <- matrix(0, 2, length(fixef(m)), dimnames = list(NULL, names(fixef(m))))
L[1, "recipeB"] <- 1; L[1, "recipeC"] <- -1
L[2, "temperaturet185"] <- 1; L[2, "recipeB:temperaturet185"] <- 0.5
ct <- list()
for (ddf in c("Satterthwaite", "Kenward-Roger")) ct[[tolower(ddf)]] <- table_json(contestMD(m, L, ddf = ddf))
out$cake_contrast <- list(L = unname(L), coef_names = colnames(L), tests = ct)

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = FALSE), file.path(dir, "anova_reference.json"))
cat("wrote", file.path(dir, "anova_reference.json"), "\n")
