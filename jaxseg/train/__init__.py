"""Training loops (SFT, GRPO) and their state: checkpoints, metrics, progress."""
