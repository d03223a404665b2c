"""Verifiable rewards of the four seeds, as pure host-side (numpy/scipy) functions.

Rewards take already-parsed answers (the protocols own answer parsing) plus arrays of
ground truth; masks arrive as arrays (the caller runs the mask backend). Format rewards
are the exception: they read the raw text and never raise on any string.

  format     tag scanning, strict think/answer structure, safe JSON, box/point validity
  boxes      box IoU / L1 / point matrices and Hungarian matching (scipy)
  mask_iou   per-frame mask IoU (empty vs empty counts as 1)
  veason     Veason-R1 R_f, R_k, R_s, R_u
  rcot       RCoT-Seg AKS (format + A/B accuracy) and KTG (format + thresholded Hungarian)
  o3         VideoSEG-O3 format, step keywords, temporal, keyframe, mask, progressive
  revseg     ReVSeg format, keyframe box-area, box IoU and their combination
  null       zero-target reward (say "no target" when there is none; no hallucinated boxes)
  registry   name -> composite reward and its documented range
"""
