"""The [SEG] route of VideoSEG-O3 (issue #10): a latent [SEG] token decoded into a mask by a
SAM2 mask decoder, SEG-aware logit calibration and the auxiliary mask loss
(shared/reference/seeds_methods.md §1(e))."""
