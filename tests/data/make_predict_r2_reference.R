## Reference numbers for tests/test_predict_intervals.py, tests/test_r2.py and tests/test_summary.py.
## Run from the repository root:  Rscript tests/data/make_predict_r2_reference.R
## Writes tests/data/predict_r2_reference.json and the simulated tests/data/predict_crossed.csv and
## tests/data/cake.csv (lme4 1.1-31, lmerTest, performance, insight; the tests do not need R).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(performance)
  library(jsonlite)
})
dat <- function(name) read.csv(file.path("tests", "data", paste0(name, ".csv")), stringsAsFactors = TRUE)
sleep <- dat("sleepstudy"); sleep$Subject <- factor(sleep$Subject)
bounce <- read.csv(file.path("jaxlme", "data", "bounce_time.csv"), stringsAsFactors = TRUE)
dye2 <- dat("Dyestuff2"); pen <- dat("Penicillin")

## lme4's cake with temperature as an unordered factor (treatment contrasts, as jaxlme codes it)
cake <- lme4::cake
cake_out <- data.frame(replicate = as.character(cake$replicate), recipe = as.character(cake$recipe),
                       temperature = paste0("t", as.character(cake$temperature)), angle = cake$angle)
write.csv(cake_out, file.path("tests", "data", "cake.csv"), row.names = FALSE)
cake <- read.csv(file.path("tests", "data", "cake.csv"), stringsAsFactors = TRUE)
cake$replicate <- factor(cake$replicate)

## an unbalanced crossed design: 30 x 20 levels, 400 rows drawn at random (cells empty or repeated)
set.seed(20261130)
n <- 400
g1 <- sample(sprintf("a%02d", 1:30), n, replace = TRUE)
g2 <- sample(sprintf("b%02d", 1:20), n, replace = TRUE, prob = (1:20) / sum(1:20))
x <- rnorm(n)
u1 <- setNames(rnorm(30, sd = 1.0), sprintf("a%02d", 1:30))
u2 <- setNames(rnorm(20, sd = 0.6), sprintf("b%02d", 1:20))
s2 <- setNames(rnorm(20, sd = 0.3), sprintf("b%02d", 1:20))
y <- 2 + 0.5 * x + u1[g1] + u2[g2] + s2[g2] * x + rnorm(n, sd = 0.8)
crossed <- data.frame(y = round(y, 6), x = round(x, 6), g1 = g1, g2 = g2)
## ten noise covariates with long names: p = 12 fixed effects (a wrapped correlation block)
for (j in 1:10) crossed[[sprintf("covariate_%02d", j)]] <- round(rnorm(n), 6)
write.csv(crossed, file.path("tests", "data", "predict_crossed.csv"), row.names = FALSE)
crossed <- read.csv(file.path("tests", "data", "predict_crossed.csv"), stringsAsFactors = TRUE)

## sleepstudy with prior weights
set.seed(7)
sleep_w <- sleep
sleep_w$w <- round(runif(nrow(sleep_w), 0.5, 2), 4)
write.csv(sleep_w, file.path("tests", "data", "sleepstudy_weighted.csv"), row.names = FALSE)
sleep_w <- read.csv(file.path("tests", "data", "sleepstudy_weighted.csv"), stringsAsFactors = TRUE)
sleep_w$Subject <- factor(sleep_w$Subject)

## rows of the data used as newdata (1-based), re.form subsets, and one row with new levels
models <- list(
  list(name = "sleepstudy", data = "sleepstudy", frame = sleep, formula = "Reaction ~ Days + (Days|Subject)",
       rows = c(1, 15, 33, 100, 180), subsets = list(),
       newlevel = list(Days = 4.5, Subject = "999")),
  list(name = "bounce", data = "bounce_time", frame = bounce,
       formula = "bounce_time ~ age_scaled + (age_scaled|county) + (1|county:location)",
       rows = c(1, 70, 200, 333, 480), subsets = list("~(age_scaled|county)", "~(1|county:location)"),
       newlevel = list(age_scaled = 0.3, county = "county_2", location = "loc_9")),
  list(name = "cake", data = "cake", frame = cake, formula = "angle ~ recipe + temperature + (1|recipe:replicate)",
       rows = c(1, 50, 121, 200, 270), subsets = list(),
       newlevel = list(recipe = "B", temperature = "t205", replicate = "99")),
  list(name = "cake_full", data = "cake", frame = cake, formula = "angle ~ recipe * temperature + (1|recipe:replicate)",
       rows = c(1, 50, 121, 200, 270), subsets = list(), newlevel = NULL),
  list(name = "crossed", data = "predict_crossed", frame = crossed, formula = "y ~ x + (1|g1) + (x|g2)",
       rows = c(1, 2, 150, 399, 400), subsets = list("~(1|g1)", "~(x|g2)"),
       newlevel = list(x = -0.7, g1 = "a99", g2 = "b03")),
  list(name = "singular", data = "Dyestuff2", frame = dye2, formula = "Yield ~ 1 + (1|Batch)",
       rows = c(1, 12, 30), subsets = list(), newlevel = list(Batch = "Z")),
  list(name = "penicillin", data = "Penicillin", frame = pen, formula = "diameter ~ 1 + (1|plate) + (1|sample)",
       rows = c(1, 20, 77, 144), subsets = list("~(1|plate)", "~(1|sample)"),
       newlevel = list(plate = "zz", sample = "B")),
  list(name = "sleepstudy_uncorr", data = "sleepstudy", frame = sleep, formula = "Reaction ~ Days + (Days||Subject)",
       rows = c(1, 15, 33, 100, 180), subsets = list(), newlevel = NULL),
  list(name = "wide", data = "predict_crossed", frame = crossed,
       formula = paste("y ~ x +", paste(sprintf("covariate_%02d", 1:10), collapse = " + "), "+ (1|g1) + (1|g2)"),
       rows = c(1, 2, 150, 399, 400), subsets = list("~(1|g2)"), newlevel = NULL),
  list(name = "weighted", data = "sleepstudy_weighted", frame = sleep_w, formula = "Reaction ~ Days + (Days|Subject)",
       weights = "w", rows = c(1, 15, 33, 100, 180), subsets = list(), newlevel = NULL),
  ## no fixed intercept: insight supplies the intercept column for the random intercept's variance
  list(name = "no_intercept", data = "sleepstudy", frame = sleep, formula = "Reaction ~ 0 + Days + (1|Subject)",
       rows = c(1, 15, 33, 100, 180), subsets = list(), newlevel = NULL),
  ## a random slope that is not a fixed effect: performance leaves it out of the random variance
  list(name = "slope_not_fixed", data = "sleepstudy", frame = sleep, formula = "Reaction ~ 1 + (Days|Subject)",
       rows = c(1, 15, 33, 100, 180), subsets = list(), newlevel = NULL)
)

records <- function(df) lapply(seq_len(nrow(df)), function(i) lapply(df[i, , drop = FALSE], function(v) {
  if (is.factor(v)) as.character(v) else v
}))

block <- function(lines, start, stops) {
  i <- which(lines == start)
  if (!length(i)) return(NULL)
  rest <- lines[-(1:i)]
  end <- which(rest == "" | grepl(paste0("^(", paste(stops, collapse = "|"), ")"), rest))
  if (length(end)) rest <- rest[seq_len(end[1] - 1)]
  rest
}

out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest")),
                            performance = as.character(packageVersion("performance")),
                            insight = as.character(packageVersion("insight"))))
fits <- list()
for (m in models) {
  fr <- m$frame
  fr$.w <- if (is.null(m$weights)) 1 else fr[[m$weights]]
  fit <- if (is.null(m$weights)) lmerTest::lmer(as.formula(m$formula), data = fr, REML = TRUE) else
    lmerTest::lmer(as.formula(m$formula), data = fr, REML = TRUE, weights = .w)
  nd <- m$frame[m$rows, , drop = FALSE]
  X <- model.matrix(delete.response(terms(fit)), nd, contrasts.arg = attr(getME(fit, "X"), "contrasts"))
  V <- as.matrix(vcov(fit))
  se_pop <- sqrt(diag(X %*% V %*% t(X)))
  ct <- lmerTest::contest(fit, X, joint = FALSE, ddf = "Satterthwaite")
  sub <- lapply(m$subsets, function(f) list(re_form = f, fit = unname(predict(fit, nd, re.form = as.formula(f)))))
  newlev <- NULL
  if (!is.null(m$newlevel)) {
    nl <- as.data.frame(m$newlevel, stringsAsFactors = FALSE)
    newlev <- list(newdata = m$newlevel, conditional = unname(predict(fit, nl, allow.new.levels = TRUE)))
  }
  ## performance::r2_nakagawa / icc (NA where performance gives none: a singular fit)
  r2 <- suppressWarnings(r2_nakagawa(fit))
  ic <- suppressWarnings(icc(fit))
  vi <- insight:::.get_variance_information(fit, faminfo = insight::model_info(fit))
  var_fixed <- insight:::.compute_variance_fixed(vi)
  ## every random term, including a factor's later terms (Subject.1), which performance omits
  var_random_all <- insight:::.compute_variance_random(names(VarCorr(fit)), x = fit, vals = vi)
  s <- summary(as(fit, "lmerMod"))
  msg <- character()
  txt <- withCallingHandlers(capture.output(print(s)), message = function(e) {
    msg <<- c(msg, conditionMessage(e)); invokeRestart("muffleMessage")
  })
  fits[[m$name]] <- list(
    name = m$name, data = m$data, formula = m$formula, weights = m$weights,
    fixef = as.list(fixef(fit)), theta = unname(getME(fit, "theta")), sigma = sigma(fit),
    newdata = records(nd),
    predict = list(conditional = unname(predict(fit, nd)), population = unname(predict(fit, nd, re.form = NA)),
                   se_population = unname(se_pop), df = unname(ct$df), subsets = sub, new_level = newlev),
    r2 = list(marginal = unname(r2$R2_marginal), conditional = unname(r2$R2_conditional)),
    icc = if (is.data.frame(ic)) list(adjusted = ic$ICC_adjusted, unadjusted = ic$ICC_unadjusted) else NULL,
    variances = list(fixed = var_fixed, random_all = var_random_all, residual = sigma(fit)^2),
    summary = list(correlation = block(txt, "Correlation of Fixed Effects:", c("optimizer", "fit warnings", "boundary")),
                   random = block(txt, "Random effects:", c("Number of obs")),
                   message = msg))
}
out$fits <- fits
## R's abbreviate(), which names the correlation block's rows (minlength 11) and columns (6)
abbr <- c("(Intercept)", "recipeB", "recipeC", "temperaturet185", "age_scaled", "Days", "x", "covariate_01",
          "covariate_02", "I(Days^2)", "poly(x, 2)1", "sexMale:ageOld", "log(dose)", "treatmentPlacebo",
          "treatmentActive", "a b c d e", "Subject", "aeiou", "AEIOUxyz", "conditionHigh:timePost",
          "   lead spaces", "xx  yy zz", "abcd", "abce", "abcf", "groupA", "groupB", "genotypeWT:treatmentDrugX")
out$abbreviate <- list(names = abbr, minlength = c(1, 2, 3, 4, 6, 8, 11),
                       abbreviations = lapply(c(1, 2, 3, 4, 6, 8, 11), function(m) unname(abbreviate(abbr, m))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           file.path("tests", "data", "predict_r2_reference.json"))
