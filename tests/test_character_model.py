"""The default model's parts: anchored motion tokens in the view and character frames, the character layer's
geometry (boxes, splats, crop and paste), the pipeline end to end, and both training stages on tiny clips."""

import json
import math

import numpy as np
import pytest
import torch
from diffusers.callbacks import PipelineCallback

from blender_addon.core.camera_path import CameraPath
from blender_addon.core.camera_rigs import intrinsics_from_fov, look_at
from dimo_engine.character_layer import crop_boxes, paste_crops, smooth_boxes, splat, target_boxes
from dimo_engine.errors import InputError
from dimo_engine.models.anchored_motion_encoder import (
    body_facing,
    character_frame_anchors,
    facing_error_deg,
    view_frame_targets,
)
from dimo_engine.pipelines import DiMoCharacterPipeline, create_character_pipeline, load_pipeline, save_pipeline
from dimo_engine.pipelines.pipeline_dimo import MotionTokens
from dimo_engine.pipelines.pipeline_dimo_character import token_anchors
from tests.fixtures_clips import write_dataset


def standing_body(turn_deg: float = 0.0, shift=(0.0, 0.0)) -> torch.Tensor:
    """22 joints of a T-ish body facing -Y turned by `turn_deg` about Z, pelvis 0.9 m up: `(22, 3)`."""
    rng = np.random.default_rng(0)
    joints = rng.uniform(-0.2, 0.2, (22, 3)) * [1, 0.3, 1] + [0, 0, 0.9]
    joints[0] = [0, 0, 0.9]
    joints[1], joints[2] = [0.1, 0, 0.85], [-0.1, 0, 0.85]  # left hip on +X: the body faces -Y
    joints[16], joints[17] = [0.2, 0, 1.4], [-0.2, 0, 1.4]
    angle = math.radians(turn_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    return torch.tensor(joints @ rotation.T + [*shift, 0], dtype=torch.float32)


def camera_to_world(azimuth_deg: float, distance: float = 4.0, height: float = 1.2) -> torch.Tensor:
    a = math.radians(azimuth_deg)
    eye = np.array([distance * math.sin(a), -distance * math.cos(a), height])
    return torch.tensor(np.linalg.inv(look_at(eye, (0.0, 0.0, 0.9))), dtype=torch.float32)


def orbit(num_frames: int, size: int = 128, sweep_deg: float = 90.0) -> CameraPath:
    angles = np.radians(np.linspace(0.0, sweep_deg, num_frames))
    eyes = np.stack([5 * np.sin(angles), -5 * np.cos(angles), np.full_like(angles, 1.2)], axis=-1)
    return CameraPath(width=size, height=size, fps=12.0, frames=np.arange(num_frames),
                      K=np.repeat(intrinsics_from_fov(40.0, size, size)[None], num_frames, 0),
                      world_to_camera=np.stack([look_at(eye, (0.0, 0.0, 0.9)) for eye in eyes]))


# ---- view frame -> character frame ------------------------------------------------------------------------


@pytest.mark.parametrize("azimuth", [0.0, 70.0, 180.0, -120.0])
def test_view_frame_targets_turn_back_into_the_character_frame_from_any_camera(azimuth):
    # A clip that turns 40 degrees and walks 0.5 m; its first frame defines the character frame.
    clip = torch.stack([standing_body(0.0), standing_body(40.0, shift=(0.5, -0.2))])  # (2, 22, 3)
    anchors, root = view_frame_targets(clip, camera_to_world(azimuth).expand(2, 4, 4))
    recovered = character_frame_anchors(anchors[None], root[None])[0]
    assert torch.allclose(recovered, clip, atol=1e-4)
    # The same body seen from two cameras has different view-frame anchors: the encoder must undo the view.
    other, _ = view_frame_targets(clip, camera_to_world(azimuth + 90).expand(2, 4, 4))
    assert (other - anchors).abs().max() > 0.05


def test_facing_and_front_back_confusion():
    front, back = standing_body(0.0), standing_body(180.0)
    assert torch.allclose(body_facing(front), torch.tensor([0.0, -1.0, 0.0]), atol=1e-5)
    assert facing_error_deg(front, back).item() == pytest.approx(180.0, abs=1e-3)
    assert facing_error_deg(front, standing_body(30.0)).item() == pytest.approx(30.0, abs=1e-3)


# ---- character layer geometry -----------------------------------------------------------------------------


def test_target_boxes_hold_every_projected_joint_and_crop_then_paste_is_identity_inside():
    camera = orbit(3)
    joints = standing_body()[None].expand(3, 22, 3)
    K, w2c = torch.from_numpy(camera.K).float(), torch.from_numpy(camera.world_to_camera).float()
    boxes = target_boxes(joints, K, w2c)
    from dimo_engine.camera import project_points

    uv, _ = project_points(joints, K, w2c)
    assert (uv >= boxes[:, None, :2]).all() and (uv <= boxes[:, None, 2:]).all()
    assert torch.allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])  # square
    image = torch.rand(3, 4, 128, 128)
    box = torch.tensor([[32.0, 32.0, 96.0, 96.0]]).expand(3, 4)
    back = paste_crops(crop_boxes(image, box, 64), box, 128, 128)
    assert torch.allclose(back[..., 33:95, 33:95], image[..., 33:95, 33:95], atol=1e-4)
    assert back[..., :30, :].abs().max() == 0  # transparent outside the box


def test_splat_peaks_at_the_point_and_smoothing_keeps_a_still_box():
    maps = splat(torch.tensor([[[10.0, 20.0]]]), torch.tensor([[[1.0]]]), 32, sigma=1.5)
    assert maps.shape == (1, 1, 32, 32)
    assert divmod(int(maps[0, 0].argmax()), 32) == (20, 10)  # row y, column x
    still = torch.tensor([[10.0, 10.0, 50.0, 50.0]]).repeat(7, 1)
    assert torch.allclose(smooth_boxes(still), still)
    shaky = still + torch.tensor([0.0, 3.0] * 3 + [0.0])[:, None]
    assert smooth_boxes(shaky)[:, 0].std() < shaky[:, 0].std()


def test_splats_and_capsules_are_their_exact_formulas_with_no_denormal_tails():
    from dimo_engine.character_layer import PROXY_EDGE_PX, capsule_coverage

    generator = torch.Generator().manual_seed(0)
    points, values = torch.rand(2, 9, 2, generator=generator) * 64, torch.randn(2, 9, 5, generator=generator)
    grid = torch.arange(64.0)
    weights = torch.exp(-((grid[None, None, :, None] - points[..., 1, None, None]) ** 2
                          + (grid[None, None, None, :] - points[..., 0, None, None]) ** 2) / (2 * 1.5 ** 2))  # (N, P, y, x)
    maps = splat(points, values, 64, sigma=1.5)
    assert torch.allclose(maps, torch.einsum("npyx,npc->ncyx", weights, values), atol=1e-6)
    radius_a, radius_b = torch.full((2, 4), 3.0), torch.full((2, 4), 2.0)
    radius_a[0, 0] = radius_b[0, 0] = 0.0  # not drawn
    coverage = capsule_coverage(points[:, :4], points[:, 4:8], radius_a, radius_b, 64)
    # the nearest capsule's soft edge, pixel by pixel: sigmoid((blended radius - distance to the segment) / edge)
    pixel = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1)[None, None]  # (1, 1, y, x, 2)
    start, end = points[:, :4, None, None], points[:, 4:8, None, None]  # (N, G, 1, 1, 2)
    along = (((pixel - start) * (end - start)).sum(-1) / (end - start).pow(2).sum(-1)).clamp(0, 1)
    distance = (pixel - start - along[..., None] * (end - start)).norm(dim=-1)
    radius = radius_a[..., None, None] + (radius_b - radius_a)[..., None, None] * along
    edge = torch.sigmoid((radius - distance) / PROXY_EDGE_PX).masked_fill(radius <= 0, 0.0).amax(1)
    assert torch.allclose(coverage[:, 0], edge, atol=1e-6)
    for soft in (maps, coverage):  # far from every point: exactly 0, never a denormal (a CPU slows tens of times)
        nonzero = soft.abs()[soft != 0]
        assert float(nonzero.min()) >= torch.finfo(torch.float32).tiny and float((soft == 0).float().mean()) > 0.3


def test_body_proxy_covers_the_body_grows_as_the_camera_comes_closer_and_draws_nothing_behind_it():
    from dimo_engine.character_layer import body_proxy
    from dimo_engine.camera import project_points

    body = standing_body()[None]  # (1, 22, 3)
    K = torch.tensor(intrinsics_from_fov(40.0, 128, 128), dtype=torch.float32)[None]
    areas = {}
    for distance in (3.0, 6.0):
        world_to_camera = torch.linalg.inv(camera_to_world(0.0, distance))[None]
        boxes = torch.tensor([[0.0, 0.0, 128.0, 128.0]])  # the whole frame, so areas compare across distances
        coverage = body_proxy(body, K, world_to_camera, boxes, 128)
        assert coverage.shape == (1, 1, 128, 128) and 0 <= float(coverage.min()) and float(coverage.max()) <= 1
        uv, _ = project_points(body, K, world_to_camera)
        pixels = uv[0].round().long().clamp(0, 127)
        assert (coverage[0, 0, pixels[:, 1], pixels[:, 0]] > 0.5).all()  # every joint is inside the body
        assert float(coverage[0, 0, :8, :8].max()) < 0.01  # and a corner far from it is empty
        areas[distance] = float((coverage > 0.5).sum())
    assert 3.0 < areas[3.0] / areas[6.0] < 5.0  # twice as close: about four times the pixels
    behind = torch.linalg.inv(camera_to_world(180.0, 4.0))[None].clone()
    behind[:, 2, 3] -= 10.0  # the camera moved 10 m on along its optical axis: the body is behind it now
    assert float(body_proxy(body, K, behind, torch.tensor([[0.0, 0.0, 128.0, 128.0]]), 64).max()) == 0.0


def test_the_silhouette_loss_draws_the_proxys_capsules_is_least_at_the_true_body_and_pulls_a_shifted_one_back():
    from dimo_engine.character_layer import PROXY_EDGE_PX, body_proxy, capsule_coverage, proxy_capsules, soft_capsules
    from training.losses import silhouette_loss

    body = torch.stack([standing_body(), standing_body(turn_deg=20.0)])  # (2, 22, 3): two frames
    K = torch.tensor(intrinsics_from_fov(40.0, 128, 128), dtype=torch.float32).expand(2, 3, 3)
    world_to_camera = torch.linalg.inv(camera_to_world(30.0, 4.0)).expand(2, 4, 4)
    whole = torch.tensor([[0.0, 0.0, 128.0, 128.0]]).expand(2, 4)
    capsules = proxy_capsules(body, K, world_to_camera, whole, 64)
    # the same capsules as the drawn proxy, with autograd
    assert torch.allclose(soft_capsules(*capsules, 64, edge=PROXY_EDGE_PX), capsule_coverage(*capsules, 64).flatten(1),
                          atol=1e-6)
    alpha = (body_proxy(body, K, world_to_camera, whole, 128)[:, 0] > 0.5).float()  # a person the proxy fits exactly
    at_truth, iou = silhouette_loss(body, K, world_to_camera, alpha, 40)
    assert float(iou) > 0.9
    shifted = (body + torch.tensor([0.15, 0.0, 0.0])).requires_grad_(True)
    loss, shifted_iou = silhouette_loss(shifted, K, world_to_camera, alpha, 40)
    assert float(loss.detach()) > float(at_truth) + 0.1 and float(shifted_iou) < float(iou)
    loss.backward()
    assert float(shifted.grad[..., 0].sum()) > 0  # descending the loss moves the body back towards -X, where it was


def test_soft_capsules_gradient_is_that_of_the_max_over_every_capsule():
    from dimo_engine.character_layer import soft_capsules

    generator = torch.Generator().manual_seed(0)
    ends = [(torch.rand(2, 5, 2, generator=generator) * 16).requires_grad_(True) for _ in range(2)]
    radii = [(torch.rand(2, 5, generator=generator) * 3).requires_grad_(True) for _ in range(2)]
    radii[0].data[0, 1] = 0.0  # one capsule not drawn
    weights = torch.rand(2, 256, generator=generator)
    # every capsule's margin at every cell, then the max: what `soft_capsules` computes for the nearest one only
    cells = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="xy"), -1).reshape(1, 1, -1, 2)
    start, along = ends[0][:, :, None], (ends[1] - ends[0])[:, :, None]
    t = (((cells - start) * along).sum(-1) / along.pow(2).sum(-1)).clamp(0, 1)
    radius = radii[0][..., None] + t * (radii[1] - radii[0])[..., None]
    margin = torch.where(radius > 0, radius - (cells - start - t[..., None] * along).norm(dim=-1), -1e3)
    dense = torch.sigmoid(margin.amax(1) / 0.4)
    dense_grads = torch.autograd.grad((dense * weights).sum(), ends + radii)
    nearest_only = soft_capsules(*ends, *radii, 16, edge=0.4)
    assert torch.allclose(nearest_only, dense, atol=1e-6)
    for ours, theirs in zip(torch.autograd.grad((nearest_only * weights).sum(), ends + radii), dense_grads):
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_smoothing_in_time_keeps_a_still_signal_and_calms_a_shaky_one():
    from dimo_engine.models.anchored_motion_encoder import smooth_in_time

    still = torch.ones(9, 22, 3)
    assert torch.allclose(smooth_in_time(still, 1.0), still)
    shaky = still + torch.tensor([0.1, -0.1] * 4 + [0.1])[:, None, None]
    assert smooth_in_time(shaky, 1.0).std(0).max() < 0.5 * shaky.std(0).max()
    assert torch.equal(smooth_in_time(shaky[:2], 1.0), shaky[:2]) and torch.equal(smooth_in_time(shaky, 0), shaky)


# ---- the integral geometry of the body encoder ----------------------------------------------------------


@pytest.mark.parametrize("pitch_deg", [0.0, 12.0])
def test_lifting_2d_joints_and_depths_gives_back_the_view_frame_pose_a_level_or_pitched_camera_saw(pitch_deg):
    from dimo_engine.models.anchored_motion_encoder import TYPICAL_METRES_PER_CROP, lifted_anchors

    body = standing_body(30.0)
    pose = body - body[:1]  # (22, 3) root-relative, view frame (right, forward, up): a camera looking along +Y
    pitch = math.radians(pitch_deg)  # the camera looks down by this much: its axes (right, down, forward)
    down_axis = torch.tensor([0.0, -math.sin(pitch), -math.cos(pitch)])
    forward_axis = torch.tensor([0.0, math.cos(pitch), -math.sin(pitch)])
    metres_per_crop = 2.5
    joints_2d = 0.5 + torch.stack([pose[:, 0], pose @ down_axis], -1) / metres_per_crop  # weak perspective, crop units
    depth = 7.0 + pose @ forward_axis
    lift = torch.tensor([[math.log(metres_per_crop / TYPICAL_METRES_PER_CROP), pitch]])
    torch.testing.assert_close(lifted_anchors(joints_2d[None], depth[None], lift)[0], pose, atol=1e-5, rtol=0)


def test_integral_decoder_reads_a_peaked_heatmap_as_its_cells_centre_and_the_depth_under_it():
    from dimo_engine.models.anchored_motion_encoder import HEATMAP_SIZE, IntegralDecoder

    decoder = IntegralDecoder((32, 64, 128, 192), num_tokens=22)
    top = torch.zeros(1, 64, HEATMAP_SIZE, HEATMAP_SIZE)
    top[0, 0, 3, 11] = 1.0  # row 3, column 11
    with torch.no_grad():
        decoder.heatmaps.weight.zero_(), decoder.heatmaps.bias.zero_(), decoder.depths.bias.zero_()
        decoder.heatmaps.weight[:, 0] = 50.0  # every heatmap peaks at that cell
        decoder.depths.weight.zero_()
        decoder.depths.weight[:, 0] = 0.7
    decoder.refine = torch.nn.Identity()
    decoder.lateral = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity(), torch.nn.Conv2d(192, 64, 1)])
    torch.nn.init.zeros_(decoder.lateral[-1].weight), torch.nn.init.zeros_(decoder.lateral[-1].bias)
    joints_2d, depth = decoder([None, top, torch.zeros(1, 64, 8, 8), torch.zeros(1, 192, 4, 4)])
    expected = torch.tensor([(11 + 0.5) / HEATMAP_SIZE, (3 + 0.5) / HEATMAP_SIZE])
    torch.testing.assert_close(joints_2d[0], expected.expand(52, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(depth[0], torch.full((22,), 0.7), atol=1e-4, rtol=0)


def test_an_integral_encoder_starts_at_its_lift_round_trips_through_a_folder_and_refuses_a_body_it_cannot_read(tmp_path):
    from dimo_engine.models.anchored_motion_encoder import AnchoredMotionEncoder, lifted_anchors

    torch.manual_seed(0)
    encoder = AnchoredMotionEncoder(geometry="integral").eval()
    crops, boxes = torch.rand(1, 2, 3, 64, 64), torch.rand(1, 2, 3)
    with torch.no_grad():
        out = encoder(crops, boxes)
        # Untrained, the anchors are the lift of its own 2D joints (the residual starts at nothing) at the typical
        # scale, level; and the 2D joints are expected cell centres, inside the crop.
        depth = torch.zeros(2, 22)  # read the forward part apart: sideways and up come from the 2D joints alone
        lifted = lifted_anchors(out["joints_2d"][0, :, :22], depth, torch.zeros(2, 2))
    torch.testing.assert_close(out["anchors"][0, ..., [0, 2]], lifted[..., [0, 2]], atol=1e-5, rtol=0)
    assert out["joints_2d"].min() > 0 and out["joints_2d"].max() < 1
    encoder.save_pretrained(tmp_path / "body")
    again = AnchoredMotionEncoder.from_pretrained(tmp_path / "body").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(crops, boxes)["anchors"], out["anchors"])
    with pytest.raises(InputError, match="not one of"):
        AnchoredMotionEncoder(geometry="heatmaps")
    with pytest.raises(InputError, match="4 stages"):
        AnchoredMotionEncoder(image_size=16, num_crops=2, num_tokens=1, channels=(32, 64), anchors=False,
                              geometry="integral")


# ---- pipeline ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe():
    pipeline = create_character_pipeline(seed=0)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _tokens(num_frames: int, dim: int = 16) -> MotionTokens:
    body = torch.zeros(1, num_frames, 22, dim + 3)
    body[..., -3:] = standing_body()
    hands = torch.zeros(1, num_frames, 2, dim + 3)
    hands[..., -3:] = standing_body()[[20, 21]]
    return MotionTokens(body, hands)


def test_pipeline_makes_an_rgba_layer_at_the_camera_size_transparent_away_from_the_person(pipe):
    camera = orbit(3, size=96)
    reference = np.zeros((64, 64, 4), np.uint8)
    reference[16:48, 24:40] = (200, 80, 40, 255)
    frames = pipe(reference, motion=_tokens(3), target_cameras=camera, num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 3, 96, 96, 4) and np.isfinite(frames).all()
    assert frames.min() >= 0 and frames.max() <= 1
    boxes = target_boxes(standing_body()[None].expand(3, 22, 3), torch.from_numpy(camera.K).float(),
                         torch.from_numpy(camera.world_to_camera).float())
    x0 = int(boxes[:, 0].min()) - 2
    assert frames[0, :, :, :max(x0, 0), 3].max() == 0  # the layer is empty left of the person's box


def test_pipeline_refuses_bad_inputs(pipe):
    reference = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="one camera per frame"):
        pipe(reference, motion=_tokens(3), target_cameras=orbit(4))
    with pytest.raises(InputError, match="encode the driving video again"):
        pipe(reference, motion=MotionTokens(torch.zeros(1, 3, 4, 128), torch.zeros(1, 3, 4, 128)),
             target_cameras=orbit(3))
    with pytest.raises(InputError, match="callback_on_step_end_tensor_inputs"):
        pipe(reference, motion=_tokens(3), target_cameras=orbit(3), callback_on_step_end_tensor_inputs=["noise"])
    with pytest.raises(InputError, match="at least 2 frames"):
        pipe.encode_driving_clip(np.zeros((1, 32, 32, 3), np.uint8), fps=12.0)
    with pytest.raises(InputError, match="alpha channel is empty"):
        pipe.encode_driving_clip(np.zeros((4, 32, 32, 4), np.uint8), fps=12.0)


def test_a_pipeline_callback_gets_the_pipeline_and_the_latents_and_a_precomputed_reference_gives_the_same_frames(pipe):
    class Recording(PipelineCallback):
        tensor_inputs = ["latents"]

        def __init__(self):
            super().__init__()
            self.calls = []

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            self.calls.append((pipeline, step_index, sorted(callback_kwargs)))
            return callback_kwargs

    reference = np.zeros((64, 64, 4), np.uint8)
    reference[16:48, 24:40] = (200, 80, 40, 255)
    callback = Recording()
    frames = pipe(reference, motion=_tokens(3), target_cameras=orbit(3), num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0), callback_on_step_end=callback,
                  callback_on_step_end_tensor_inputs=[]).frames
    assert callback.calls == [(pipe, 0, ["latents"]), (pipe, 1, ["latents"])]
    reference_latents = pipe.encode_reference(reference)
    assert reference_latents.shape == (1, 4, pipe.config.crop_size, pipe.config.crop_size)
    again = pipe(reference_latents=reference_latents, motion=_tokens(3), target_cameras=orbit(3), num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0)).frames
    np.testing.assert_array_equal(again, frames)
    with pytest.raises(InputError, match="exactly one of reference_image"):
        pipe(reference, reference_latents=reference_latents, motion=_tokens(3), target_cameras=orbit(3))
    with pytest.raises(InputError, match="reference_latents have shape"):
        pipe(reference_latents=reference_latents[:, :3], motion=_tokens(3), target_cameras=orbit(3))


def test_driving_clip_becomes_character_frame_tokens_and_the_folder_round_trips(pipe, tmp_path):
    frames = np.zeros((5, 64, 64, 4), np.uint8)
    frames[:, 10:54, 24:40] = (180, 120, 90, 255)
    motion = pipe.encode_driving_clip(frames, fps=24.0)  # resampled to the model's 12 fps
    assert motion.body.shape == (1, 3, 22, 19) and motion.hands.shape == (1, 3, 2, 19)
    # Hand tokens sit at the wrists; the first frame's root is on the character frame's Z axis.
    assert torch.allclose(motion.hands[0, :, :, -3:], motion.body[0, :, [20, 21], -3:])
    assert torch.allclose(motion.body[0, 0, 0, -3:-1], torch.zeros(2), atol=1e-5)
    folder = save_pipeline(pipe, tmp_path / "pipeline")
    loaded = load_pipeline(folder, device="cpu")
    assert isinstance(loaded, DiMoCharacterPipeline)
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "DiMoCharacterPipeline"
    again = loaded.encode_driving_clip(frames, fps=24.0)
    assert torch.allclose(again.body, motion.body, atol=1e-5)


def test_a_driving_clip_with_alpha_has_its_pose_fitted_to_its_silhouettes_and_one_without_is_read_as_it_is(pipe):
    frames = np.zeros((3, 64, 64, 4), np.uint8)
    frames[:, 10:54, 24:40] = (180, 120, 90, 255)
    frames[:, 20:26, 8:56, 3] = 255  # arms held out: the person's alpha
    fitted = pipe.encode_driving_clip(frames, fps=12.0, silhouette_fit_steps=40)
    as_read = pipe.encode_driving_clip(frames, fps=12.0, silhouette_fit_steps=0)
    moved = (fitted.body[..., -3:] - as_read.body[..., -3:]).norm(dim=-1)
    assert float(moved.max()) > 1e-3
    assert torch.equal(fitted.body[..., :-3], as_read.body[..., :-3])  # the tokens' features are the crops' own
    rgb = frames[..., :3].copy()
    assert torch.equal(pipe.encode_driving_clip(rgb, fps=12.0, silhouette_fit_steps=40).body,
                       pipe.encode_driving_clip(rgb, fps=12.0, silhouette_fit_steps=0).body)


# ---- training ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("character-clips"), num_clips=2, num_frames=5, size=64)


def _config(clips, out, **overrides):
    from training.train_character import CharacterTrainConfig

    settings = {"dataset": str(clips), "output_dir": str(out), "encoder_batch": "4", "joint_batch": "2",
                "checkpoint_every": "2", "log_every": "1", "threads": "1", "aux_hold_steps": "1", "aux_end_step": "2",
                "body_proxy": "false"}  # tests that want the proxy ask for it
    return CharacterTrainConfig.load("character-default", {**settings, **{k: str(v) for k, v in overrides.items()}})


@pytest.mark.slow
def test_both_stages_train_resume_identically_and_export(clips, tmp_path):
    from training.train_character import train_stage

    train_stage(_config(clips, tmp_path / "full", encoder_steps=4), "encoders")
    train_stage(_config(clips, tmp_path / "split", encoder_steps=4, pause_at_step=2), "encoders")
    train_stage(_config(clips, tmp_path / "split", encoder_steps=4), "encoders")  # continues at step 2
    full = torch.load(tmp_path / "full" / "encoders_checkpoint.pt", weights_only=False)["log"]
    split = torch.load(tmp_path / "split" / "encoders_checkpoint.pt", weights_only=False)["log"]
    assert [e["total"] for e in full] == pytest.approx([e["total"] for e in split], rel=1e-5)
    last = train_stage(_config(clips, tmp_path / "full", encoder_steps=4, joint_steps=3), "joint")
    assert last["step"] == 3 and "aux" not in last  # the geometric loss is exactly 0 from aux_end_step on
    assert isinstance(load_pipeline(tmp_path / "full" / "pipeline", device="cpu"), DiMoCharacterPipeline)


def test_a_run_trains_on_several_datasets_drawing_clips_from_each(clips, tmp_path):
    from training.character_data import CharacterExamples, build_character_cache
    from training.train_character import dataset_folders, train_stage

    more = write_dataset(tmp_path / "more", num_clips=3, num_frames=5, size=64)
    assert dataset_folders(_config(clips, tmp_path, dataset=f"{clips},{more}")) == [str(clips), str(more)]
    examples = CharacterExamples([build_character_cache(folder, "train", progress=False) for folder in (clips, more)])
    assert len(examples) == 5
    drawn = {examples.choose(np.random.default_rng(seed)).clip for seed in range(40)}
    assert drawn & {0, 1} and drawn & {2, 3, 4}  # both datasets' clips are drawn
    last = train_stage(_config(clips, tmp_path / "run", dataset=f"{clips},{more}", encoder_steps=2), "encoders")
    assert last["step"] == 2
    with pytest.raises(InputError, match="no folder"):
        dataset_folders(_config(clips, tmp_path, dataset=" , "))


def test_joint_stage_needs_the_encoder_stage_and_configs_refuse_unknown_keys(clips, tmp_path):
    from training.train_character import CharacterTrainConfig, train_stage

    with pytest.raises(InputError, match="run the 'encoders' stage first"):
        train_stage(_config(clips, tmp_path / "fresh"), "joint")
    with pytest.raises(InputError, match="give init_from"):
        train_stage(_config(clips, tmp_path / "fresh", init_encoders_from=tmp_path / "encoders.pt"), "joint")
    with pytest.raises(InputError, match="unknown setting"):
        CharacterTrainConfig.load("character-default", {"encoder_stepz": "3"})
    with pytest.raises(InputError, match="joint_steps='0'.*greater than or equal to 1"):
        CharacterTrainConfig.load("character-default", {"joint_steps": "0"})
    with pytest.raises(InputError, match="valid number"):
        CharacterTrainConfig.load("character-default", {"generator_lr": "fast"})
    assert CharacterTrainConfig.load("character-default", {"joint_batch": "8"}).joint_batch == 8


@pytest.mark.slow
def test_init_from_starts_the_joint_stage_from_a_pipeline_folder_without_the_encoder_stage(clips, tmp_path):
    from training.train_character import module_weights, train_stage

    shipped = create_character_pipeline(seed=5)  # not the seed train_stage starts from
    save_pipeline(shipped, tmp_path / "shipped")
    # At learning rate 0 a step leaves every weight where it started: the folder's, not a fresh model's.
    train_stage(_config(clips, tmp_path / "run", joint_steps=1, generator_lr=0, joint_encoder_lr=0,
                        init_from=tmp_path / "shipped"), "joint")
    trained = torch.load(tmp_path / "run" / "joint_checkpoint.pt", weights_only=False)["models"]
    for name, weights in module_weights(shipped).items():
        for key, value in weights.items():
            torch.testing.assert_close(trained[name][key], value, msg=f"{name}.{key}")
    with pytest.raises(InputError, match="model_index.json"):
        train_stage(_config(clips, tmp_path / "other", joint_steps=1, init_from=tmp_path / "missing"), "joint")


@pytest.mark.slow
def test_a_joint_stage_can_train_the_tokens_features_while_the_encoders_geometry_stays(clips, tmp_path):
    from training.train_character import module_weights, train_stage

    shipped = create_character_pipeline(seed=5)
    save_pipeline(shipped, tmp_path / "shipped")
    train_stage(_config(clips, tmp_path / "run", joint_steps=1, generator_lr=0, joint_encoder_lr=0,
                        joint_feature_lr=1e-2, init_from=tmp_path / "shipped"), "joint")
    trained = torch.load(tmp_path / "run" / "joint_checkpoint.pt", weights_only=False)["models"]
    for name in ("body_encoder", "hand_encoder"):
        for key, value in module_weights(shipped)[name].items():
            if key.startswith("feature_head."):  # learned by the generation loss
                assert not torch.allclose(trained[name][key], value), f"{name}.{key} did not train"
            else:  # the geometry, the backbone included, as the folder had it
                torch.testing.assert_close(trained[name][key], value, msg=f"{name}.{key}")


@pytest.mark.slow
def test_an_appearance_stage_continues_a_pipeline_folder_with_its_encoders_frozen(clips, tmp_path):
    from training.train_character import module_weights, train_stage

    shipped = create_character_pipeline(seed=5)
    save_pipeline(shipped, tmp_path / "shipped")
    with pytest.raises(InputError, match="run the 'joint' stage first, or set init_from"):
        train_stage(_config(clips, tmp_path / "nothing", appearance_steps=1), "appearance")
    train_stage(_config(clips, tmp_path / "run", appearance_steps=1, appearance_encoder_lr=0, true_anchor_ratio=1,
                        init_from=tmp_path / "shipped"), "appearance")
    trained = torch.load(tmp_path / "run" / "appearance_checkpoint.pt", weights_only=False)["models"]
    for name in ("body_encoder", "hand_encoder"):  # frozen: as the folder had them
        for key, value in module_weights(shipped)[name].items():
            torch.testing.assert_close(trained[name][key], value, msg=f"{name}.{key}")
    started = module_weights(shipped)["generator"]["conv_in.weight"]
    conv_in = trained["generator"]["conv_in.weight"]
    assert conv_in.shape[1] == started.shape[1] + 3  # widened by the reference's colours
    assert not torch.allclose(conv_in[:, -3:], torch.zeros(())), "the colour channels did not train"
    assert load_pipeline(tmp_path / "run" / "appearance_pipeline", device="cpu").reads_appearance
    # rgb_loss_weight scales the colours' term alone: the same step, the same example and noise
    weighted = train_stage(_config(clips, tmp_path / "weighted", appearance_steps=1, appearance_encoder_lr=0,
                                   true_anchor_ratio=1, rgb_loss_weight=5, init_from=tmp_path / "shipped"), "appearance")
    first = torch.load(tmp_path / "run" / "appearance_checkpoint.pt", weights_only=False)["log"][0]
    assert weighted["rgb"] == pytest.approx(5 * first["rgb"], rel=1e-3)  # the log keeps 5 decimals
    assert weighted["alpha"] == pytest.approx(first["alpha"], rel=1e-3)


@pytest.mark.slow
def test_init_from_starts_the_encoder_stage_and_init_encoders_from_swaps_the_joint_stages_encoders(clips, tmp_path):
    from training.train_character import module_weights, train_stage

    shipped, retrained = create_character_pipeline(seed=5), create_character_pipeline(seed=6)
    save_pipeline(shipped, tmp_path / "shipped")
    save_pipeline(retrained, tmp_path / "retrained")
    # At learning rate 0 the encoder stage keeps the folder's encoders, not a fresh model's.
    train_stage(_config(clips, tmp_path / "encoders", encoder_steps=1, encoder_lr=0,
                        init_from=tmp_path / "retrained"), "encoders")
    checkpoint = tmp_path / "encoders" / "encoders_checkpoint.pt"
    train_stage(_config(clips, tmp_path / "joint", joint_steps=1, generator_lr=0, joint_encoder_lr=0,
                        init_from=tmp_path / "shipped", init_encoders_from=checkpoint), "joint")
    trained = torch.load(tmp_path / "joint" / "joint_checkpoint.pt", weights_only=False)["models"]
    expected = {**module_weights(shipped), **{name: weights for name, weights in module_weights(retrained).items()
                                              if name in ("body_encoder", "hand_encoder")}}
    for name in ("body_encoder", "hand_encoder", "generator"):
        for key, value in expected[name].items():
            torch.testing.assert_close(trained[name][key], value, msg=f"{name}.{key}")
    # An encoder stage continues another one's encoders from its checkpoint, on its own or over init_from's.
    for init_from in ("", tmp_path / "shipped"):
        out = tmp_path / f"continued{bool(init_from)}"
        train_stage(_config(clips, out, encoder_steps=1, encoder_lr=0, init_from=init_from,
                            init_encoders_from=checkpoint), "encoders")
        continued = torch.load(out / "encoders_checkpoint.pt", weights_only=False)["models"]
        for name in ("body_encoder", "hand_encoder"):
            for key, value in expected[name].items():
                torch.testing.assert_close(continued[name][key], value, msg=f"{name}.{key}")
    with pytest.raises(InputError, match="not a file"):
        train_stage(_config(clips, tmp_path / "other", encoder_steps=1, init_encoders_from=tmp_path / "missing.pt"),
                    "encoders")
    with pytest.raises(InputError, match="not a file"):
        train_stage(_config(clips, tmp_path / "other", joint_steps=1, init_from=tmp_path / "shipped",
                            init_encoders_from=tmp_path / "missing.pt"), "joint")


def test_true_anchor_tokens_place_the_chosen_share_of_examples_at_their_true_joints():
    from training.train_character import true_anchor_tokens

    encoded, joints = torch.randn(400, 24, 3), torch.randn(400, 22, 3)
    for ratio, share in ((0.0, 0.0), (1.0, 1.0), (0.5, 0.5)):
        anchors = true_anchor_tokens(encoded, joints, ratio, torch.Generator().manual_seed(0))
        true = (anchors == token_anchors(joints)).all(-1).all(-1)
        assert torch.equal(anchors[~true], encoded[~true])  # the others keep their encoded anchors
        assert float(true.float().mean()) == pytest.approx(share, abs=0.06)


def test_a_mirrored_example_is_the_mirror_body_and_mirroring_twice_gives_it_back():
    import roma

    from dimo_engine.body.kinematics import forward_kinematics, procedural_rest_joints
    from dimo_engine.models.motion_encoder import rotation_6d, rotmat_from_6d
    from dimo_engine.pipelines.pipeline_dimo_character import MIRROR_JOINTS_2D
    from training.train_character import mirrored

    torch.manual_seed(0)
    x_negated = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    rotations = roma.rotvec_to_rotmat(0.4 * torch.randn(2, 52, 3, dtype=torch.float64))
    rotations[:, 22:] = torch.eye(3, dtype=torch.float64)  # fingers at rest
    size, column = 16, 3
    crop = torch.zeros(2, 4, size, size)
    crop[:, :, 5, column] = 1.0  # one bright pixel, where the left hip is
    joints_2d = torch.rand(2, 52, 2)
    joints_2d[:, 1] = torch.tensor([(column + 0.5) / size, 5.5 / size])
    batch = {"driving_crop": crop, "driving_box": torch.rand(2, 3), "driving_joints_2d": joints_2d,
             "driving_anchors": torch.randn(2, 22, 3), "driving_root": torch.randn(2, 3),
             "driving_body_pose_6d": rotation_6d(rotations[:, :22]).float(), "driving_hand_crops": torch.rand(2, 2, 3, 8, 8)}
    flip = torch.tensor([True, False])
    seen = mirrored(batch, flip)

    for key, value in batch.items():  # the example not flipped is as it was, and twice mirrored is the original
        assert torch.equal(seen[key][1], value[1]), key
        torch.testing.assert_close(mirrored(seen, flip)[key], value, msg=key)
    assert torch.equal(seen["driving_hand_crops"], batch["driving_hand_crops"])
    assert seen["driving_crop"][0, 0, 5, size - 1 - column] == 1.0  # the right hip is now where the pixel went
    torch.testing.assert_close(seen["driving_joints_2d"][0, 2], torch.tensor([(size - 1 - column + 0.5) / size, 5.5 / size]))
    torch.testing.assert_close(seen["driving_anchors"][0, 2], batch["driving_anchors"][0, 1] * x_negated.float())
    # The mirrored rotations pose the mirror image of the body: forward kinematics of a left-right symmetric skeleton.
    rest = procedural_rest_joints(None)
    rest = (rest + rest[MIRROR_JOINTS_2D] * [-1.0, 1.0, 1.0]) / 2
    mirrored_rotations = rotations[:1].clone()
    mirrored_rotations[:, :22] = rotmat_from_6d(seen["driving_body_pose_6d"][:1].double())
    posed, _ = forward_kinematics(rotations[:1], rest)
    posed_mirror, _ = forward_kinematics(mirrored_rotations, rest)
    np.testing.assert_allclose(posed_mirror[0, :22], (posed[0, MIRROR_JOINTS_2D] * [-1.0, 1.0, 1.0])[:22], atol=1e-5)


def test_the_roots_depth_costs_a_hundredth_of_its_sideways_place_a_crop_cannot_tell_distance():
    from training.train_character import encoder_losses

    def root_loss(error):
        zeros = {"anchors": torch.zeros(2, 1, 22, 3), "joints_2d": torch.zeros(2, 1, 24, 2),
                 "pose_6d": torch.zeros(2, 1, 1, 21, 6), "hand_pose": torch.zeros(2, 2, 15, 6)}
        out = {**zeros, "root": torch.tensor(error, dtype=torch.float32).expand(2, 1, 3)}
        batch = {"driving_" + key: value[:, 0] for key, value in zeros.items() if key not in ("pose_6d", "hand_pose")}
        batch.update(driving_root=torch.zeros(2, 3), driving_body_pose_6d=torch.zeros(2, 21, 6),
                     driving_hand_pose_6d=torch.zeros(2, 2, 15, 6))
        return float(encoder_losses(out, batch)["root"])

    sideways, depth, height = root_loss([0.3, 0, 0]), root_loss([0, 0.3, 0]), root_loss([0, 0, 0.3])
    assert sideways == pytest.approx(height) and sideways > 0
    assert depth == pytest.approx(sideways / 100)


def test_root_travel_comes_from_the_clips_2d_track_whatever_the_distance_heads_bias():
    from dimo_engine.models.anchored_motion_encoder import root_from_track

    # A body walking 1 m sideways and 1.5 m towards a level pinhole camera (f = 150 px, 128 px image).
    frames, focal = 9, 150.0
    body = standing_body()  # character frame = view frame here: right X, forward Y (away from the camera), up Z
    travel = torch.stack([torch.linspace(0, 1.0, frames), torch.linspace(0, -1.5, frames), torch.zeros(frames)], -1)
    start = torch.tensor([0.2, 6.0, 0.0])
    joints = body[None] + start + travel[:, None]  # (F, 22, 3), camera at the origin, 0.9 m up
    u = focal * joints[..., 0] / joints[..., 1] + 64
    v = -focal * (joints[..., 2] - 0.9) / joints[..., 1] + 64
    joints_px = torch.stack([u, v], -1)
    anchors = joints - joints[:, :1]
    true_root = torch.stack([joints[:, 0, 0], joints[:, 0, 1], joints[:, 0, 2]], -1)
    biased = true_root + torch.tensor([0.0, 1.2, 0.0])  # the distance head 1.2 m too far on every frame
    root = root_from_track(joints_px, anchors, biased, 128, smooth_frames=0)
    found, truth = root - root[:1], true_root - true_root[:1]
    assert (found - truth)[:, :2].norm(dim=-1).max() < 0.45  # the bias scales depth travel by at most (6+1.2)/6
    assert (found - truth)[:, 0].abs().max() < 0.25
    zero_travel_error = truth[:, :2].norm(dim=-1).max()
    assert (found - truth)[:, :2].norm(dim=-1).max() < 0.3 * zero_travel_error


def test_a_still_body_whose_scale_fit_jitters_stays_put_while_a_walk_keeps_its_depth_travel():
    from dimo_engine.models.anchored_motion_encoder import TRAVEL_NOISE_M, root_from_track

    frames, focal = 9, 150.0
    anchors = (standing_body() - standing_body()[:1]).expand(frames, 22, 3)

    def seen_at(depths):  # the body's 2D joints at these distances from a level pinhole camera
        joints = anchors + torch.stack([torch.zeros(frames), depths, torch.full((frames,), 0.9)], -1)[:, None]
        return torch.stack([focal * joints[..., 0] / joints[..., 1] + 64,
                            -focal * (joints[..., 2] - 0.9) / joints[..., 1] + 64], -1)

    head = torch.tensor([0.0, 5.0, 0.9]).expand(frames, 3)
    jitter = 5.0 * (1 + 0.01 * torch.tensor([1.0, -1.0] * 4 + [1.0]))  # the fit's scale off by 1 % each frame
    still, still_raw = (root_from_track(seen_at(jitter), anchors, head, 128, 0, noise)[:, 1] for noise in
                        (TRAVEL_NOISE_M, 0.0))
    assert (still - still[0]).abs().max() < 0.35 * (still_raw - still_raw[0]).abs().max()
    depths = torch.linspace(5.0, 3.5, frames)
    walk = root_from_track(seen_at(depths), anchors, torch.stack([torch.zeros(frames), depths, torch.full((frames,), 0.9)],
                                                                 -1), 128, 0)[:, 1]
    assert (walk[-1] - walk[0]).item() == pytest.approx(-1.5, rel=0.03)


@pytest.mark.slow
def test_dimo_generate_writes_the_rgba_layer_or_flat_frames_over_a_background(pipe, tmp_path):
    from PIL import Image

    from dimo_engine.cli.main import main

    save_pipeline(pipe, tmp_path / "model")
    driving = tmp_path / "driving"
    driving.mkdir()
    for index in range(6):
        frame = np.zeros((64, 64, 4), np.uint8)
        frame[10:54, 24 + index:40 + index] = (180, 120, 90, 255)
        Image.fromarray(frame, "RGBA").save(driving / f"{index:04d}.png")
    reference = np.zeros((64, 64, 4), np.uint8)
    reference[8:56, 24:40] = (40, 90, 200, 255)
    Image.fromarray(reference, "RGBA").save(tmp_path / "ref.png")
    common = ["generate", "--reference", str(tmp_path / "ref.png"), "--driving", str(driving), "--fps", "12",
              "--camera-phrase", "orbit left 90 degrees", "--model", str(tmp_path / "model"), "--steps", "2"]
    assert main([*common, "--out", str(tmp_path / "layer")]) == 0
    layer = np.asarray(Image.open(tmp_path / "layer" / "camera_00" / "0000.png"))
    assert layer.shape[-1] == 4 and layer[..., 3].min() == 0  # transparent where the person is not
    assert (tmp_path / "layer" / "camera_00" / "video.mp4").is_file()
    assert main([*common, "--out", str(tmp_path / "flat"), "--background", "#ff0000"]) == 0
    flat = np.asarray(Image.open(tmp_path / "flat" / "camera_00" / "0000.png"))
    assert flat.shape[-1] == 3
    empty = layer[..., 3] == 0
    assert (flat[empty] == (255, 0, 0)).all()  # the background shows wherever the layer is empty
    assert main([*common, "--out", str(tmp_path / "bad"), "--background", "not-a-colour"]) == 2
    assert not (tmp_path / "bad").exists()


def test_a_body_proxy_pipeline_reads_one_more_channel_keeps_it_through_a_folder_and_starts_as_the_plain_one(tmp_path):
    from training.train_character import widened_generator

    plain, proxied = create_character_pipeline(seed=0), create_character_pipeline(seed=1, body_proxy=True)
    assert proxied.generator.config.in_channels == plain.generator.config.in_channels + 1
    assert not proxied.reads_appearance
    proxied.generator.load_state_dict(widened_generator(plain.generator.state_dict(), proxied))
    proxied.body_encoder.load_state_dict(plain.body_encoder.state_dict())
    proxied.hand_encoder.load_state_dict(plain.hand_encoder.state_dict())
    camera = orbit(3)
    motion = _tokens(3)
    plain_maps, boxes = plain.motion_maps(motion, camera)
    maps, same_boxes = proxied.motion_maps(motion, camera)
    assert torch.equal(boxes, same_boxes) and torch.equal(maps[:, :-1], plain_maps)
    assert maps.shape[1] == plain_maps.shape[1] + 1 and float(maps[:, -1].max()) > 0.9  # coverage, in [-1, 1]
    reference = np.zeros((64, 64, 4), np.uint8)
    reference[8:56, 24:40] = (40, 90, 200, 255)
    generated = {name: p(reference, motion, camera, num_inference_steps=2, generator=torch.Generator().manual_seed(0)
                         ).frames for name, p in (("plain", plain), ("proxied", proxied))}
    np.testing.assert_allclose(generated["plain"], generated["proxied"], atol=1e-4)  # zero weights: the same layer
    save_pipeline(proxied, tmp_path / "proxied")
    assert load_pipeline(tmp_path / "proxied", device="cpu").config.body_proxy is True


def test_the_anchors_learn_through_the_splat_and_not_through_the_body_proxy():
    proxied = create_character_pipeline(seed=1, body_proxy=True)
    camera = orbit(2)
    tokens = torch.cat([_tokens(2).body[0], _tokens(2).hands[0]], dim=1)
    anchors = tokens[..., -3:].clone().requires_grad_(True)
    K = torch.from_numpy(camera.K).float()
    world_to_camera = torch.from_numpy(camera.world_to_camera).float()
    boxes = proxied.motion_boxes(anchors.detach(), K, world_to_camera, (camera.height, camera.width))
    maps = proxied.splat(anchors, tokens[..., :-3], K, world_to_camera, boxes)
    assert float(maps[:, -1].detach().max()) > 0.9  # the proxy is drawn ...
    (none,) = torch.autograd.grad(maps[:, -1].sum(), anchors, retain_graph=True, allow_unused=True)
    assert none is None or float(none.abs().sum()) == 0.0
    (gradient,) = torch.autograd.grad(maps[:, :-1].pow(2).sum(), anchors)  # ... and the splat carries the gradient
    assert float(gradient.abs().sum()) > 0


def test_the_mirrored_reading_swaps_each_joint_with_its_twin_and_a_mirrored_crop_reads_as_the_mirrored_body(pipe):
    from dimo_engine.body.skeleton import SMPLH_JOINT_NAMES
    from dimo_engine.pipelines.pipeline_dimo_character import MIRROR_JOINTS_2D

    def twin(name):
        return name.replace("left", "@").replace("right", "left").replace("@", "right")

    assert [SMPLH_JOINT_NAMES[i] for i in MIRROR_JOINTS_2D] == [twin(n) for n in SMPLH_JOINT_NAMES[:52]]
    crops = torch.rand(1, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[[0.2, 0.1, 0.5]] * 3])
    with torch.no_grad():
        seen = pipe.mirror_averaged(crops, boxes)
        mirrored = pipe.mirror_averaged(crops.flip(-1), boxes * torch.tensor([-1.0, 1.0, 1.0]))
        plain = pipe.body_encoder(crops, boxes)
    anchors = seen["anchors"][:, :, MIRROR_JOINTS_2D[:22]] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(mirrored["anchors"], anchors)
    joints = seen["joints_2d"][:, :, MIRROR_JOINTS_2D]
    torch.testing.assert_close(mirrored["joints_2d"], torch.stack([1 - joints[..., 0], joints[..., 1]], -1))
    torch.testing.assert_close(seen["features"], plain["features"])  # the generator reads the crop's own features
    assert not torch.allclose(seen["anchors"], plain["anchors"])


def test_widening_the_generator_for_appearance_changes_nothing_until_it_trains():
    from dimo_engine.character_layer import reference_colours
    from training.train_character import widened_generator

    plain, wide = create_character_pipeline(seed=0), create_character_pipeline(seed=1, appearance=True)
    assert not plain.reads_appearance and wide.reads_appearance
    wide.generator.load_state_dict(widened_generator(plain.generator.state_dict(), wide))
    inputs = torch.randn(2, plain.generator.config.in_channels, 64, 64)
    colours = torch.randn(2, 3, 64, 64)
    timesteps = torch.tensor([100.0, 700.0])
    with torch.no_grad():
        before = plain.generator(inputs, timesteps).sample
        after = wide.generator(torch.cat([inputs, colours], 1), timesteps).sample
    assert torch.allclose(before, after, atol=1e-5)
    # The colours are read where each point sits on the reference: a red top half and a blue bottom half.
    reference = torch.zeros(1, 3, 64, 64)
    reference[:, 0, :32], reference[:, 2, 32:] = 1.0, 1.0
    joints = torch.full((1, 24, 2), 0.5)
    joints[:, :12, 1], joints[:, 12:, 1] = 0.2, 0.8
    sampled = reference_colours(reference, joints)
    assert torch.allclose(sampled[0, 0], torch.tensor([1.0, 0.0, 0.0])) and torch.allclose(sampled[0, 12], torch.tensor([0.0, 0.0, 1.0]))


@pytest.mark.slow
def test_a_service_job_with_the_default_models_pipeline_returns_rgba_layer_frames(pipe, tmp_path):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from dimo_engine.server import JobRunner, create_app
    from tests.test_server import AUTH, TOKEN, job_files, job_inputs, wait_for

    inputs = job_inputs(tmp_path, 64, 64, 48)
    runner = JobRunner(pipe, tmp_path / "work")
    try:
        with TestClient(create_app(runner, TOKEN)) as client:
            answer = client.post("/v1/jobs", headers=AUTH, **job_files(inputs))
            assert answer.status_code == 202, answer.text
            final = wait_for(client, answer.json()["job_id"], timeout=120.0)[-1]
            assert final["status"] == "done", final
            png = client.get(f"/v1/jobs/{answer.json()['job_id']}/frames/0/0000.png", headers=AUTH)
            layer = np.asarray(Image.open(io.BytesIO(png.content)))
            assert layer.shape == (48, 64, 4)  # the camera's own size, with the person's alpha
    finally:
        runner.shutdown()


@pytest.mark.slow
def test_an_integral_encoder_stage_feeds_its_joint_stage_and_the_evaluation_and_a_mismatched_geometry_is_named(
        clips, tmp_path):
    from training.evaluate_character import with_encoders
    from training.train_character import train_stage

    integral = {"encoder_geometry": "integral"}
    train_stage(_config(clips, tmp_path / "run", encoder_steps=2, **integral), "encoders")
    checkpoint = tmp_path / "run" / "encoders_checkpoint.pt"
    last = train_stage(_config(clips, tmp_path / "run", joint_steps=1, aux_end_step=1, **integral), "joint")
    assert last["step"] == 1
    trained = load_pipeline(tmp_path / "run" / "pipeline", device="cpu")
    assert trained.body_encoder.config.geometry == "integral"
    # The evaluation scores an encoder stage inside another model (here one of the earlier, global layout), building
    # the geometry its weights need.
    pipe = create_character_pipeline(seed=3, encoder_geometry="global")
    with_encoders(pipe, str(checkpoint))
    saved = torch.load(checkpoint, weights_only=False)["models"]["body_encoder"]
    assert pipe.body_encoder.config.geometry == "integral"
    for key, value in saved.items():
        torch.testing.assert_close(pipe.body_encoder.state_dict()[key], value, msg=key)
    with pytest.raises(InputError, match="encoder_geometry=integral"):
        train_stage(_config(clips, tmp_path / "global", joint_steps=1, init_from=tmp_path / "run" / "pipeline",
                            encoder_geometry="global"), "joint")


def test_the_colour_error_is_read_where_both_layers_hold_the_person_next_to_a_grey_figures():
    from training.evaluate_character import person_colour_error

    truth = np.zeros((2, 8, 8, 4), np.uint8)
    truth[:, 2:6, 2:6] = (255, 0, 0, 255)  # a red person
    generated = np.zeros((2, 8, 8, 4), np.float32)
    generated[:, 2:6, 2:4] = (1.0, 0.0, 0.0, 1.0)  # half of it drawn red
    generated[:, 2:6, 4:8] = (0.0, 0.0, 1.0, 1.0)  # the other half blue, spilling out of the person
    colour, grey = person_colour_error(generated, truth)
    assert colour == pytest.approx((0 * 8 + 2 / 3 * 8) / 16)  # the spill outside the true person is not read
    assert grey == pytest.approx(0.5)
    assert person_colour_error(np.zeros_like(generated), truth) == (pytest.approx(float("nan"), nan_ok=True),) * 2


def _silhouette_start(tmp_path, steps):
    """A saved pipeline for a silhouette stage to continue, and the small stage's settings that continue it."""
    shipped = create_character_pipeline(seed=5)
    save_pipeline(shipped, tmp_path / "shipped")
    return shipped, {"silhouette_steps": steps, "silhouette_lr": 1e-3, "silhouette_clips": 1, "silhouette_frames": 3,
                     "silhouette_cells": 16, "init_from": tmp_path / "shipped"}


@pytest.mark.slow
def test_a_silhouette_stage_trains_only_the_body_encoders_geometry_resumes_identically_and_exports(clips, tmp_path):
    from training.train_character import SILHOUETTE_MODULES, module_weights, train_stage

    shipped, settings = _silhouette_start(tmp_path, steps=2)
    with pytest.raises(InputError, match="set init_from"):
        train_stage(_config(clips, tmp_path / "nothing", silhouette_steps=1), "silhouette")
    last = train_stage(_config(clips, tmp_path / "full", **settings), "silhouette")
    assert {"silhouette", "silhouette_iou", "anchors", "total"} <= set(last)
    train_stage(_config(clips, tmp_path / "split", pause_at_step=1, **settings), "silhouette")
    train_stage(_config(clips, tmp_path / "split", **settings), "silhouette")  # continues at step 1
    full = torch.load(tmp_path / "full" / "silhouette_checkpoint.pt", weights_only=False)["models"]
    split = torch.load(tmp_path / "split" / "silhouette_checkpoint.pt", weights_only=False)["models"]
    before = module_weights(shipped)
    for name in ("body_encoder", "hand_encoder", "generator"):
        for key, value in before[name].items():
            torch.testing.assert_close(split[name][key], full[name][key], msg=f"{name}.{key}")
            if not torch.equal(full[name][key], value):  # only the body encoder's geometry trains
                assert name == "body_encoder" and key.split(".")[0] in SILHOUETTE_MODULES, f"{name}.{key} changed"
    changed = [key for key, value in before["body_encoder"].items() if not torch.equal(full["body_encoder"][key], value)]
    assert {key.split(".")[0] for key in changed} >= {"decoder", "root_head"}
    exported = load_pipeline(tmp_path / "full" / "silhouette_pipeline", device="cpu")
    torch.testing.assert_close(exported.body_encoder.state_dict()["root_head.weight"], full["body_encoder"]["root_head.weight"])


@pytest.mark.slow
def test_silhouette_modules_choose_which_parts_of_the_body_encoder_train(clips, tmp_path):
    from training.train_character import module_weights, train_stage

    shipped, settings = _silhouette_start(tmp_path, steps=1)
    with pytest.raises(InputError, match="silhouette_modules='trunk,heads'"):
        train_stage(_config(clips, tmp_path / "typo", silhouette_modules="trunk,heads", **settings), "silhouette")
    train_stage(_config(clips, tmp_path / "trunk", silhouette_modules="trunk,root_head", **settings), "silhouette")
    trained = torch.load(tmp_path / "trunk" / "silhouette_checkpoint.pt", weights_only=False)["models"]["body_encoder"]
    changed = {key.split(".")[0] for key, value in module_weights(shipped)["body_encoder"].items()
               if not torch.equal(trained[key], value)}
    assert changed == {"trunk", "root_head"}
