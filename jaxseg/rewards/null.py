"""Zero-target reward: a query may describe nothing in the video.

None of the seeds handles this in training (RCoT-Seg lists it as a limitation; Veason-R1
only reports the robustness metric R, which penalises predicted pixels outside the GT).
This term makes abstention learnable and hallucination costly:

  target absent:  any predicted box                  -> -1 (hallucination)
                  no box and an explicit "no target" -> +1
                  no box, no statement               ->  0
  target present: says "no target"                   -> -1 (false abstention)
                  otherwise                          ->  0 (grounding rewards judge boxes)

Range [-1, 1]. Add it to a seed's reward when the data holds null queries.
"""

from __future__ import annotations


def null_reward(*, has_target: bool, said_no_target: bool, num_pred_boxes: int) -> float:
    """See module docstring. `said_no_target` comes from the protocol's parser."""
    if num_pred_boxes < 0:
        raise ValueError(f"num_pred_boxes must be >= 0, got {num_pred_boxes}")
    if not has_target:
        if num_pred_boxes > 0:
            return -1.0
        return 1.0 if said_no_target else 0.0
    return -1.0 if said_no_target else 0.0
