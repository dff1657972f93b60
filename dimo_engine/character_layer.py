"""Where anchored motion tokens meet a target camera: the person's crop box in that camera, the tokens splatted
pixel-aligned into it, and crops cut from or pasted back into full frames (the character layer).

The default model generates the person in a square crop that follows the body: the box is the projected extent
of the motion's own anchors (never the ground truth at inference), so the generator always sees the person at
the same scale, and the crop is pasted back into the camera's full frame as RGBA (alpha = the person).
The benchmark's 2D-pose baseline reads its motion view-locked instead (`view_locked_pixels`, `splat_view_locked`,
`view_locked_proxy`): the driving view's 2D joints drawn where the driving camera saw them, whatever the target.
All functions are torch, batched over a leading N axis, and differentiable where training needs it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.geometry.transform import crop_and_resize

from dimo_engine.body.skeleton import SMPLH_PARENTS
from dimo_engine.camera import project_points
from dimo_engine.models.anchored_motion_encoder import smooth_in_time

BODY_PARENTS = [int(p) for p in SMPLH_PARENTS[:22]]
BONE_SAMPLES = (0.25, 0.5, 0.75)  # points along each bone, besides its two joints
# Joints sit inside the body: the box grows by this fraction of the joints' extent on every side to reach the
# head top, the hands' tips and the soles.
BOX_PADDING = 0.22
MIN_BOX_SIDE = 8.0


def motion_points(anchors: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token anchors `(N, K, 3)` (22 body joints first) and features `(N, K, C)` -> the points a splat draws:
    every token, plus points along each body bone carrying the blend of its two joints' features."""
    parents = torch.tensor(BODY_PARENTS[1:], device=anchors.device)
    children = torch.arange(1, len(BODY_PARENTS), device=anchors.device)
    points, values = [anchors], [features]
    for fraction in BONE_SAMPLES:
        points.append(anchors[:, parents] * (1 - fraction) + anchors[:, children] * fraction)
        values.append(features[:, parents] * (1 - fraction) + features[:, children] * fraction)
    return torch.cat(points, dim=1), torch.cat(values, dim=1)


def square_boxes_around(points_uv: torch.Tensor, padding: float = BOX_PADDING) -> torch.Tensor:
    """The padded square box `(N, 4)` [x0, y0, x1, y1] around projected points `(N, P, 2)` (pixels)."""
    low, high = points_uv.amin(dim=1), points_uv.amax(dim=1)
    centre = (low + high) / 2
    side = ((high - low).amax(dim=-1) * (1 + 2 * padding)).clamp_min(MIN_BOX_SIDE)
    return torch.cat([centre - side[:, None] / 2, centre + side[:, None] / 2], dim=-1)


def target_boxes(anchors: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor) -> torch.Tensor:
    """Crop boxes `(N, 4)` of the person in target cameras from the motion's character-frame anchors `(N, K, 3)`
    (K `(N, 3, 3)`, world_to_camera `(N, 4, 4)`). Points behind the camera are left out of the extent."""
    uv, depth = project_points(anchors, K, world_to_camera)
    in_front = depth > 1e-3
    uv = torch.where(in_front[..., None], uv, uv.new_zeros(()).expand_as(uv))
    if not bool(in_front.all()):  # use the visible points' centre for those behind, so they do not widen the box
        centre = (uv * in_front[..., None]).sum(1, keepdim=True) / in_front.sum(1, keepdim=True).clamp_min(1)[..., None]
        uv = torch.where(in_front[..., None], uv, centre.expand_as(uv))
    return square_boxes_around(uv)


def smooth_boxes(boxes: torch.Tensor, sigma_frames: float = 1.0) -> torch.Tensor:
    """Boxes of consecutive frames `(F, 4)` smoothed in time (Gaussian), so the crop does not shake the layer."""
    return smooth_in_time(boxes, sigma_frames)


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut boxes `(N, 4)` [x0, y0, x1, y1] (pixel edges) from images `(N, C, H, W)` -> `(N, C, size, size)`;
    outside the image is 0 (transparent for RGBA in [0, 1])."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    corners = torch.stack([torch.stack(c, dim=-1) for c in ((x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1))],
                          dim=-2)  # (N, 4, 2): kornia wants inclusive corner pixels
    return crop_and_resize(images, corners.to(images.dtype), (size, size), mode="bilinear", align_corners=True)


def paste_crops(crops: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `crop_boxes`: crops `(N, C, S, S)` placed back at boxes `(N, 4)` in `(N, C, height, width)`
    frames, 0 outside the box (the layer is transparent there)."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=crops.dtype, device=crops.device),
                            torch.arange(width, dtype=crops.dtype, device=crops.device), indexing="ij")
    x0, y0, x1, y1 = (v.to(crops.dtype)[:, None, None] for v in boxes.unbind(-1))
    # pixel x of the frame -> crop pixel (x - x0) / (x1 - 1 - x0) * (S - 1), as crop_and_resize samples it
    grid_x = (xs[None] - x0) / (x1 - 1 - x0).clamp_min(1e-6) * 2 - 1
    grid_y = (ys[None] - y0) / (y1 - 1 - y0).clamp_min(1e-6) * 2 - 1
    grid = torch.stack([grid_x, grid_y], dim=-1)  # (N, H, W, 2)
    return F.grid_sample(crops, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


# The body as capsules around its bones, for the body proxy: each segment runs between two body joints, or from a
# joint on along its parent bone's direction by a length (the head above the head joint, the hands past the wrists).
# Radii (metres, at the segment's start and end) are set by hand from adult proportions: drawn from the true joints
# they score silhouette IoU 0.84 on the held-out test clips (radii fitted by soft IoU came out fatter and scored 0.77).
PROXY_SEGMENTS = tuple((int(p), child, 0.0) for child, p in enumerate(BODY_PARENTS) if p >= 0) + (
    (15, 15, 0.12),  # head top: past the head joint, along neck -> head
    (20, 20, 0.08), (21, 21, 0.08),  # hands: past the wrists, along elbow -> wrist
)
PROXY_RADII = (
    (0.11, 0.09), (0.11, 0.09), (0.13, 0.13), (0.085, 0.06), (0.085, 0.06), (0.13, 0.13), (0.055, 0.045),
    (0.055, 0.045), (0.13, 0.14), (0.045, 0.035), (0.045, 0.035), (0.09, 0.05), (0.09, 0.06), (0.09, 0.06),
    (0.05, 0.09), (0.06, 0.05), (0.06, 0.05), (0.05, 0.04), (0.05, 0.04), (0.04, 0.03), (0.04, 0.03),
    (0.1, 0.09), (0.035, 0.03), (0.035, 0.03),
)
PROXY_EDGE_PX = 0.7  # softness of the capsules' edge in crop pixels
# Soft weights (splat profiles, capsule edges) below this are exactly 0: smaller ones reach float32's denormal range,
# where a CPU computes tens of times slower, and change no picture.
NEGLIGIBLE = 1e-8


def proxy_segments(joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Body joints `(N, 22, 3)` -> the proxy's segment starts and ends `(N, len(PROXY_SEGMENTS), 3)`."""
    starts, ends = [], []
    for start, end, extension in PROXY_SEGMENTS:
        if extension == 0.0:
            starts.append(joints[:, start])
            ends.append(joints[:, end])
        else:  # on past the joint, along the direction of the bone that ends there
            direction = joints[:, end] - joints[:, BODY_PARENTS[end]]
            direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            starts.append(joints[:, end])
            ends.append(joints[:, end] + extension * direction)
    return torch.stack(starts, 1), torch.stack(ends, 1)


def body_proxy(anchors: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor, boxes: torch.Tensor,
               size: int) -> torch.Tensor:
    """Where a body of typical build would cover a target camera's crop, from the motion's body anchors
    `(N, >=22, 3)` (character frame): capsules around the bones (`PROXY_RADII`, metres), each end's radius turned
    into pixels by its own depth, so the proxy grows as the camera comes closer and thins with the crop box.
    -> coverage `(N, 1, size, size)` in [0, 1]. The generator draws the character's own shape from it."""
    return capsule_coverage(*proxy_capsules(anchors, K, world_to_camera, boxes, size), size)


def proxy_capsules(anchors: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor, boxes: torch.Tensor,
                   size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The body proxy's capsules in a target camera's crop, from body anchors `(N, >=22, 3)` (character frame):
    segment ends `a`, `b` `(N, G, 2)` and their radii `(N, G)` in crop pixels (0 behind the camera), what
    `capsule_coverage` draws. Differentiable in the anchors."""
    radii = torch.tensor(PROXY_RADII, dtype=anchors.dtype, device=anchors.device)
    starts, ends = proxy_segments(anchors[:, :22])
    count = starts.shape[1]
    uv, depth = project_points(torch.cat([starts, ends], 1), K, world_to_camera)  # (N, 2G, 2), (N, 2G)
    side = (boxes[:, 2] - boxes[:, 0]).clamp_min(1e-6)
    to_crop = (size - 1) / side  # crop pixels per frame pixel
    crop_uv = (uv - boxes[:, None, :2]) * to_crop[:, None, None]
    focal = K[:, 0, 0] if K.dim() == 3 else K[0, 0].expand(anchors.shape[0])
    in_front = depth > 1e-3
    radius_px = torch.cat([radii[:, 0], radii[:, 1]])[None] * focal[:, None] / depth.clamp_min(1e-3) * to_crop[:, None]
    radius_px = torch.where(in_front, radius_px, torch.zeros_like(radius_px))
    return crop_uv[:, :count], crop_uv[:, count:], radius_px[:, :count], radius_px[:, count:]


@torch.no_grad()
def capsule_margins(a: torch.Tensor, b: torch.Tensor, radius_a: torch.Tensor, radius_b: torch.Tensor,
                    size: int) -> torch.Tensor:
    """How far inside each capsule every pixel of a crop is: segment ends `a`, `b` `(N, G, 2)` (crop pixels) and
    their radii `(N, G)` (crop pixels, 0: not drawn), the radius blended along each segment -> radius - distance to
    the segment `(N, G, size * size)` in pixels, -inf for a capsule not drawn.

    Without autograd, so the `(N, G, S*S)` maps, the capsules' whole cost, are computed in place: three of them
    instead of a dozen."""
    grid = torch.arange(size, dtype=a.dtype, device=a.device)
    x, y = (c.reshape(1, 1, -1) for c in torch.meshgrid(grid, grid, indexing="xy"))  # (1, 1, S*S) each
    ax, ay = a[..., 0:1], a[..., 1:2]  # (N, G, 1)
    dx, dy = b[..., 0:1] - ax, b[..., 1:2] - ay
    px, py = x - ax, y - ay  # from the segment's start (N, G, S*S)
    t = (px * dx).addcmul_(py, dy).div_((dx * dx + dy * dy).clamp_min(1e-6)).clamp_(0, 1)  # along the segment
    distance = px.addcmul_(t, dx, value=-1).hypot_(py.addcmul_(t, dy, value=-1))  # to the nearest point on it
    radius = t.mul_((radius_b - radius_a)[:, :, None]).add_(radius_a[:, :, None])
    not_drawn = radius <= 0
    return radius.sub_(distance).masked_fill_(not_drawn, -math.inf)


@torch.no_grad()
def capsule_coverage(a: torch.Tensor, b: torch.Tensor, radius_a: torch.Tensor, radius_b: torch.Tensor,
                     size: int) -> torch.Tensor:
    """Soft capsules in a crop: segment ends `a`, `b` `(N, G, 2)` (crop pixels) and their radii `(N, G)` (crop
    pixels, 0: not drawn) -> coverage `(N, 1, size, size)` in [0, 1]: sigmoid((radius - distance to the segment) /
    `PROXY_EDGE_PX`) of the nearest capsule (`capsule_margins`). Drawn without autograd: the proxy is a drawing aid;
    the anchors learn through the splat."""
    floor = math.log(NEGLIGIBLE)  # sigmoid(floor) ~ NEGLIGIBLE: further out is exactly 0 (see `gaussian_profile`)
    # the sigmoid rises, so the nearest capsule's edge decides: the max before the sigmoid, on (N, S*S) only
    inside = capsule_margins(a, b, radius_a, radius_b, size).div_(PROXY_EDGE_PX).amax(dim=1).clamp_min(floor)
    return (torch.sigmoid(inside) * (inside > floor)).reshape(-1, 1, size, size)


# Capsules drawn to be fitted (the silhouette stage, `silhouette_fit`): their edge in cells, softer than the drawing's
# for useful gradients.
SILHOUETTE_EDGE_CELLS = 0.4


def soft_capsules(a: torch.Tensor, b: torch.Tensor, radius_a: torch.Tensor, radius_b: torch.Tensor,
                  size: int, edge: float = SILHOUETTE_EDGE_CELLS) -> torch.Tensor:
    """`capsule_coverage`'s capsules with autograd, in cells: segment ends `(N, G, 2)`, radii `(N, G)` -> coverage
    `(N, size * size)` in [0, 1], sigmoid((radius - distance) / `edge`) of the nearest capsule. Each cell's nearest
    capsule is found without autograd (`capsule_margins`), and only its margin is computed again with it: the
    gradient of a max reaches the largest term alone, so this is exact, and the `(N, G, S*S)` maps need no memory
    for the backward pass."""
    with torch.no_grad():
        nearest = capsule_margins(a, b, radius_a, radius_b, size).argmax(dim=1)  # (N, S*S)
    grid = torch.arange(size, dtype=a.dtype, device=a.device)
    cells = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), dim=-1).reshape(1, -1, 2)  # (1, S*S, 2)
    start, end = (v.gather(1, nearest[..., None].expand(-1, -1, 2)) for v in (a, b))  # (N, S*S, 2)
    radius_start, radius_end = radius_a.gather(1, nearest), radius_b.gather(1, nearest)  # (N, S*S)
    along = end - start
    t = (((cells - start) * along).sum(-1) / along.pow(2).sum(-1).clamp_min(1e-6)).clamp(0, 1)
    distance = (cells - start - t[..., None] * along).norm(dim=-1)
    radius = radius_start + t * (radius_end - radius_start)
    # sigmoid(-30) ~ 1e-13 changes no sum; further out, float32's denormal range would make the CPU crawl
    inside = torch.where(radius > 0, (radius - distance) / edge, torch.full_like(radius, -30.0)).clamp_min(-30.0)
    return torch.sigmoid(inside)


def splat(points_uv: torch.Tensor, values: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Gaussian splats of point values: points `(N, P, 2)` in crop pixels, values `(N, P, C)` -> `(N, C, S, S)`."""
    weight_x, weight_y = (gaussian_profile(points_uv[..., axis:axis + 1], size, sigma) for axis in (0, 1))  # (N, P, S)
    n, p, c = values.shape
    rows = torch.einsum("npc,npy->ncyp", values, weight_y).reshape(n, c * size, p)  # each point's value down its row
    return torch.bmm(rows, weight_x).reshape(n, c, size, size)


def gaussian_profile(centres: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """exp(-(pixel - centre)^2 / 2 sigma^2) over a row of `size` pixels, for centres `(..., 1)` -> `(..., size)`.

    Far from its centre a Gaussian falls below float32's normal range, and arithmetic on such denormal numbers is
    tens of times slower on a CPU (the splat's forward and backward took 930 ms a batch on one loaded core, 32 ms
    without them): below `NEGLIGIBLE` the profile is exactly 0."""
    grid = torch.arange(size, dtype=centres.dtype, device=centres.device)
    exponent, cutoff = (grid - centres) ** 2 / (2 * sigma ** 2), -math.log(NEGLIGIBLE)
    return torch.exp(-exponent.clamp_max(cutoff)).masked_fill(exponent > cutoff, 0.0)


def reference_colours(reference: torch.Tensor, joints_2d: torch.Tensor) -> torch.Tensor:
    """The character's look where each splat point sits on it: reference crops `(N, 3, S, S)` in [0, 1] and the body
    encoder's 2D joints on them `(N, 24, 2)` (crop units; hand tokens at the wrists) -> colours `(N, P, 3)` at the
    same points `motion_points` draws (joints, then along the bones)."""
    points, _ = motion_points(joints_2d, joints_2d[..., :1])
    grid = (points * 2 - 1)[:, :, None]  # (N, P, 1, 2) in grid_sample's [-1, 1]
    return F.grid_sample(reference, grid, mode="bilinear", padding_mode="border", align_corners=True)[..., 0].transpose(1, 2)


def splat_motion(anchors: torch.Tensor, features: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor,
                 boxes: torch.Tensor, size: int, sigma: float = 1.5, colours: torch.Tensor | None = None) -> torch.Tensor:
    """Motion tokens seen by a target camera, pixel-aligned in its crop: anchors `(N, K, 3)` (character frame),
    features `(N, K, C)`, cameras (N, 3, 3) / (N, 4, 4), boxes `(N, 4)` -> maps `(N, C + 2, size, size)`:
    the splatted features, the points' depth relative to the body's (so the generator knows what is in front),
    and a coverage channel; with `colours` `(N, P, 3)` (`reference_colours`) also the character's colours carried to
    where the target camera sees each point (3 more channels, normalised by coverage)."""
    points, values = motion_points(anchors, features)
    uv, depth = project_points(points, K, world_to_camera)  # (N, P, 2), (N, P)
    crop_uv = crop_pixels(uv, boxes, size)
    root_depth = depth[:, :1]
    relative_depth = ((depth - root_depth) / 0.5).clamp(-3, 3)  # in half metres
    visible = (depth > 1e-3).to(values.dtype)[..., None]
    channels = torch.cat([values, relative_depth[..., None], torch.ones_like(relative_depth)[..., None]], dim=-1)
    maps = splat(crop_uv, channels * visible, size, sigma)
    if colours is None:
        return maps
    colour_maps = splat(crop_uv, colours * visible, size, sigma) / (maps[:, -1:] + 0.2)
    return torch.cat([maps, colour_maps * 2 - 1], dim=1)


# ---- view-locked: the 2D-pose baseline ----------------------------------------------------------------------

# Vertical extent of the 22 body joints of a standing adult (head joint to toes; the procedural rest body: 1.515 m):
# the view-locked proxy turns a body's 2D height in pixels into pixels per metre by it.
TYPICAL_JOINT_HEIGHT_M = 1.5


def view_locked_points(joints_2d: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Driving-view 2D joints `(..., J, 2)` (pixels of a `width` x `height` frame) -> view-locked points
    `(..., J, 3)`: (x, y) from the frame's centre in units of its height, and 0 (no depth): what the 2D-pose
    baseline's motion tokens carry in place of 3D anchors (`view_locked_pixels` reads them back)."""
    centre = joints_2d.new_tensor([width / 2, height / 2])
    xy = (joints_2d - centre) / float(height)
    return torch.cat([xy, torch.zeros_like(xy[..., :1])], dim=-1)


def view_locked_pixels(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """View-locked points `(..., J, 3)` (`view_locked_points`) -> pixels `(..., J, 2)` of a `width` x `height`
    target frame: where the driving camera saw them, the driving frame fitted to the target frame's height and
    centred, whatever the target camera is (pose-guided animation is locked to the driving view)."""
    return points[..., :2] * float(height) + points.new_tensor([width / 2, height / 2])


def crop_pixels(uv: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Frame pixels `(N, P, 2)` -> pixels of each box's `size` crop `(N, P, 2)` (boxes `(N, 4)`)."""
    side = (boxes[:, 2] - boxes[:, 0]).clamp_min(1e-6)
    return (uv - boxes[:, None, :2]) / side[:, None, None] * (size - 1)


def splat_view_locked(pixels: torch.Tensor, features: torch.Tensor, boxes: torch.Tensor, size: int,
                      sigma: float = 1.5) -> torch.Tensor:
    """The 2D-pose baseline's maps, laid out as `splat_motion`'s: token pixels `(N, K, 2)` (22 body joints first,
    in the target frame, `view_locked_pixels`) and features `(N, K, C)`, boxes `(N, 4)` -> `(N, C + 2, size,
    size)`: the features splatted at the joints and along the bones, a depth channel that is 0 (a 2D pose has no
    depth), and the coverage channel."""
    points, values = motion_points(pixels, features)
    channels = torch.cat([values, torch.zeros_like(values[..., :1]), torch.ones_like(values[..., :1])], dim=-1)
    return splat(crop_pixels(points, boxes, size), channels, size, sigma)


def view_locked_proxy(pixels: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The body proxy's 2D stand-in for the 2D-pose baseline: the same capsules (`PROXY_SEGMENTS`, `PROXY_RADII`)
    drawn around the 2D bones of body joints `(N, >=22, 2)` (target-frame pixels), metres turned into pixels by the
    body's 2D height (its joints' vertical extent over `TYPICAL_JOINT_HEIGHT_M`): a typical build at the scale the
    2D pose shows, no depth. -> coverage `(N, 1, size, size)` in [0, 1]."""
    joints = pixels[:, :22]
    pixels_per_metre = ((joints[..., 1].amax(1) - joints[..., 1].amin(1)) / TYPICAL_JOINT_HEIGHT_M).clamp_min(1e-3)
    starts, ends = proxy_segments(joints / pixels_per_metre[:, None, None])  # in metres, so head and hands extend
    scale = pixels_per_metre[:, None, None]
    radii = torch.tensor(PROXY_RADII, dtype=pixels.dtype, device=pixels.device)
    to_crop = (size - 1) / (boxes[:, 2] - boxes[:, 0]).clamp_min(1e-6)
    radius_px = radii[None] * (pixels_per_metre * to_crop)[:, None, None]  # (N, G, 2)
    return capsule_coverage(crop_pixels(starts * scale, boxes, size), crop_pixels(ends * scale, boxes, size),
                            radius_px[..., 0], radius_px[..., 1], size)
