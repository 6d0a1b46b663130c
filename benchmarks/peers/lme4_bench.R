# lme4 peer benchmark: time lme4 fits on the jaxlme benchmark cases.
#
# Usage:
#   Rscript lme4_bench.R CASE CSV [REPS] [NBOOT] [--warmup=K] [--seed=S]
#
# CASE is one of
#   sleepstudy            Reaction ~ Days + (Days | Subject), REML
#   insteval              y ~ 1 + service + (1|s) + (1|d) + (1|dept), ML
#   bootstrap_sleepstudy  bootMer(sleepstudy fit, FUN = fixef, nsim = NBOOT,
#                         use.u = FALSE, type = "parametric", fixed seed)
#   synthetic             y ~ x + (1 + x | g1) + (1 | g2), ML
#                         (CSV with columns y, x, g1, g2; see make_synthetic.py)
#
# REPS (default 5) timed fits are run after K (default 1) untimed warm-up fits;
# the bootstrap case warms up with a 5-replicate bootMer.  Exactly one line of
# JSON is written to stdout; everything else (messages, warnings) goes to stderr.
# Exit status: 0 ok, 1 error (JSON has "status": "error"), 2 usage error.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

usage <- function() {
  message("usage: Rscript lme4_bench.R CASE CSV [REPS] [NBOOT] [--warmup=K] [--seed=S]")
  quit(status = 2)
}

parse_args <- function(argv) {
  flags <- grepl("^--", argv)
  pos <- argv[!flags]
  opt <- list(warmup = 1L, seed = 20240101L)
  for (f in argv[flags]) {
    kv <- strsplit(sub("^--", "", f), "=", fixed = TRUE)[[1]]
    if (length(kv) != 2 || !(kv[1] %in% names(opt))) usage()
    opt[[kv[1]]] <- as.integer(kv[2])
  }
  if (length(pos) < 2) usage()
  a <- list(
    case = pos[1], csv = pos[2],
    reps = if (length(pos) >= 3) as.integer(pos[3]) else 5L,
    nboot = if (length(pos) >= 4) as.integer(pos[4]) else 1000L,
    warmup = opt$warmup, seed = opt$seed
  )
  if (anyNA(unlist(a[c("reps", "nboot", "warmup")])) || a$reps < 1 || a$nboot < 1 || a$warmup < 0) usage()
  a
}

read_data <- function(path) {
  if (requireNamespace("data.table", quietly = TRUE)) {
    as.data.frame(data.table::fread(path, showProgress = FALSE))
  } else {
    read.csv(path)
  }
}

# Model specification per case: formula, REML flag, factor columns.
spec_for <- function(case) {
  switch(case,
    sleepstudy = ,
    bootstrap_sleepstudy = list(
      formula = Reaction ~ Days + (Days | Subject), REML = TRUE,
      factors = "Subject"
    ),
    insteval = list(
      formula = y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept), REML = FALSE,
      factors = c("s", "d", "dept", "service")
    ),
    synthetic = list(
      formula = y ~ x + (1 + x | g1) + (1 | g2), REML = FALSE,
      factors = c("g1", "g2")
    ),
    usage()
  )
}

# Peak resident set size of this R process in MB (Linux only, else NULL).
peak_rss_mb <- function() {
  st <- tryCatch(readLines("/proc/self/status"), error = function(e) NULL)
  line <- grep("^VmHWM:", st, value = TRUE)
  if (length(line) == 0) return(NULL)
  as.numeric(gsub("[^0-9]", "", line)) / 1024
}

# Wall-clock seconds to evaluate `expr` (Sys.time has sub-millisecond resolution).
elapsed <- function(expr) {
  t0 <- Sys.time()
  force(expr)
  as.numeric(difftime(Sys.time(), t0, units = "secs"))
}

main <- function() {
  a <- parse_args(commandArgs(trailingOnly = TRUE))
  spec <- spec_for(a$case)
  d <- read_data(a$csv)
  for (f in spec$factors) d[[f]] <- factor(d[[f]])

  fit_once <- function() lmer(spec$formula, data = d, REML = spec$REML)
  boot_case <- a$case == "bootstrap_sleepstudy"

  for (i in seq_len(a$warmup)) fit <- fit_once()
  times <- numeric(a$reps)
  for (i in seq_len(a$reps)) times[i] <- elapsed(fit <- fit_once())

  out <- list(
    status = "ok", peer = "lme4", case = a$case, n = nobs(fit),
    reps = a$reps, warmup = a$warmup,
    fit_seconds_median = median(times), fit_seconds_all = I(times)
  )
  if (spec$REML) {
    out$reml_criterion <- unname(getME(fit, "devcomp")$cmp[["REML"]])
  } else {
    out$deviance <- deviance(fit)
  }
  out$fixef <- as.list(fixef(fit))
  out$theta <- I(unname(getME(fit, "theta")))
  out$theta_names <- I(names(getME(fit, "theta")))
  out$sigma <- sigma(fit)

  if (boot_case) {
    boot <- function(nsim) {
      set.seed(a$seed)
      bootMer(fit, FUN = fixef, nsim = nsim, use.u = FALSE, type = "parametric")
    }
    invisible(boot(5L))
    out$boot_seconds <- elapsed(b <- boot(a$nboot))
    out$nboot <- a$nboot
    out$seed <- a$seed
    sds <- apply(b$t, 2, sd, na.rm = TRUE)
    out$boot_fixef_sd <- as.list(setNames(sds, names(fixef(fit))))
    out$boot_failures <- sum(!stats::complete.cases(b$t))
  }

  out$lme4_version <- as.character(packageVersion("lme4"))
  out$r_version <- paste(R.version$major, R.version$minor, sep = ".")
  out$peak_rss_mb <- peak_rss_mb()
  cat(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null"), "\n", sep = "")
}

# Errors are reported as {"status": "error", ...} with exit status 1.
tryCatch(main(), error = function(e) {
  err <- list(status = "error", peer = "lme4", error = conditionMessage(e))
  cat(toJSON(err, auto_unbox = TRUE), "\n", sep = "")
  quit(status = 1)
})
