"""GRPO core: pure, jittable functions for advantages, policy losses, KL, aggregation.

Layout (one job per module):
  advantages   group-relative advantages (GRPO, Dr.GRPO, RLOO)
  logprobs     per-token log-probs and entropy from logits
  policy_loss  PPO-clipped and on-policy (un-clipped) surrogate losses, per token
  kl           k1 / k2 / k3 estimators of KL(policy || reference), per token
  aggregation  token -> scalar reductions kept as (weighted sum, denominator)
  objective    the combined GRPO loss (policy term + beta * KL), built from the above
  diagnostics  clip fraction, ratio stats, KL, entropy, sampler-vs-trainer gap
  registry     name -> function tables: what a config's string picks
"""
