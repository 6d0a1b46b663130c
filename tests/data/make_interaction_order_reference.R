# The order of an interaction grouping's levels in lme4 1.1-31 (ranef rows), for
# tests/test_random_terms.py::test_interaction_levels_follow_each_factors_level_order.
# Rscript tests/data/make_interaction_order_reference.R prints:
#   [1] "z:1" "z:2" "a:1" "a:2"
#   [1] "z:2:q" "a:1:p" "a:2:q" "m:1:p"
suppressPackageStartupMessages(library(lme4))
set.seed(1)
d <- expand.grid(a = c("z", "a"), b = c("1", "2"), rep = 1:5)
d$a <- factor(d$a, levels = c("z", "a"))
d$y <- rnorm(nrow(d)) + as.integer(d$a) + as.integer(factor(d$b))
print(rownames(ranef(lmer(y ~ 1 + (1 | a:b), d))[["a:b"]]))
# three factors, unused combinations and an unused level ("n") dropped
e <- data.frame(a = factor(c("z", "a", "a", "m"), levels = c("z", "n", "a", "m")),
                b = c("2", "1", "2", "1"), c = c("q", "p", "q", "p"))
e <- e[rep(1:4, each = 6), ]
e$y <- rnorm(nrow(e)) + rep(c(0, 1, 2, 3), each = 6)
print(rownames(ranef(lmer(y ~ 1 + (1 | a:b:c), e))[["a:b:c"]]))
