"""The [SEG] route of VideoSEG-O3: a latent [SEG] token decoded into a mask by a
SAM2 mask decoder, SEG-aware logit calibration and the auxiliary mask loss
(VideoSEG-O3, arXiv 2606.06819)."""
