"""Evaluation: DAVIS-exact J / F, robustness R, box IoU (`metrics`), per-benchmark scoring
(`scoring`) and averaging conventions (`aggregate`)."""
