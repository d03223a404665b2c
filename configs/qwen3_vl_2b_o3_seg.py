"""VideoSEG-O3-2B as released: `qwen3_vl_4b_o3_seg` with Qwen3-VL-2B-Instruct (same recipe,
VideoSEG-O3 arXiv 2606.06819; the released model zoo has both sizes).

    jaxseg seg --config qwen3_vl_2b_o3_seg --workdir runs/o3_2b --seeds 0 --set model.init=...
    jaxseg plan --config qwen3_vl_2b_o3_seg --topology v5p-32
"""

from jaxseg.config import load_config, parse_arg


def get_config(arg=None):
    a = parse_arg(arg, remat="full", tensor=1, micro_batch=16)
    return load_config(
        f"qwen3_vl_4b_o3_seg:size=2b,remat={a.remat},tensor={a.tensor},micro_batch={a.micro_batch}"
    )
