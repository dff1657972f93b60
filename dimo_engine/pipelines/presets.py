"""Model sizes by name: the component configs of a fresh (random-weight) DiMo pipeline.

"tiny" is for tests (seconds on a CPU); "tiny-cpu" is the default model's size (17 frames x 128 px,
a ~9M-parameter DiT, everything under ~60 MB on disk).
"""

from __future__ import annotations

PRESETS = {
    "tiny": {
        "pipeline": dict(num_frames=9, fps=12.0, height=32, width=32),
        "vae": dict(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                    latents_mean=[0.0] * 4, latents_std=[1.0] * 4),
        "transformer": dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
                            out_channels=4, text_dim=16, freq_dim=32, ffn_dim=48, num_layers=2,
                            rope_max_seq_len=64, motion_dim=16, camera_unshuffle=2),
        "body_encoder": dict(image_size=32, patch_size=8, num_crops=1, num_motion_tokens=2, dim=32, motion_dim=16,
                             num_layers=1, num_heads=2, aux_joints=22),
        "hand_encoder": dict(image_size=16, patch_size=8, num_crops=2, num_motion_tokens=1, dim=16, motion_dim=16,
                             num_layers=1, num_heads=2, aux_joints=15),
        "keypoint_locator": dict(image_size=32, channels=(8, 8), num_joints=52),
        "scheduler": dict(shift=2.0),
    },
    "tiny-cpu": {
        "pipeline": dict(num_frames=17, fps=12.0, height=128, width=128),
        "vae": dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1),
        "transformer": dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=64, in_channels=16,
                            out_channels=16, text_dim=64, freq_dim=256, ffn_dim=640, num_layers=8,
                            rope_max_seq_len=256, motion_dim=128, camera_unshuffle=4),
        "body_encoder": dict(image_size=64, patch_size=8, num_crops=1, num_motion_tokens=8, dim=128, motion_dim=128,
                             num_layers=4, num_heads=4, aux_joints=22),
        "hand_encoder": dict(image_size=32, patch_size=8, num_crops=2, num_motion_tokens=4, dim=96, motion_dim=128,
                             num_layers=2, num_heads=4, aux_joints=15),
        "keypoint_locator": dict(image_size=128, channels=(32, 64, 96), num_joints=52),
        "scheduler": dict(shift=2.0),
    },
}
