"""`dimo contact-sheet CLIP --out sheet.png`: one PNG of a rendered clip, views as rows and frames as
columns, with the 2D joints and hand boxes drawn on, so a person can look at the data."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("clip", help="a clip folder of a rendered dataset (…/train/clip_000000)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--max-frames", type=int, default=8, help="columns: frames spread evenly over the clip")
    parser.add_argument("--no-joints", action="store_true", help="leave out the 2D joints and hand boxes")


def contact_sheet(clip, max_frames: int = 8, draw_joints: bool = True):
    """A PIL image of views x frames (plus a mask row per view is not needed: alpha is shown as a dim border)."""
    import numpy as np
    from PIL import Image, ImageDraw

    columns = np.unique(np.linspace(0, clip.num_frames - 1, min(max_frames, clip.num_frames)).round().astype(int))
    label_width = 110
    width, height = clip.width, clip.height
    sheet = Image.new("RGB", (label_width + width * len(columns), height * len(clip.views)), (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    for row, view in enumerate(clip.views.values()):
        frames = view.frames(columns)  # (C, H, W, 4)
        annotations = view.annotations
        draw.text((4, row * height + 4), f"{view.name}\n({view.kind})", fill=(230, 230, 230))
        for column, frame_index in enumerate(columns):
            x0, y0 = label_width + column * width, row * height
            sheet.paste(Image.fromarray(frames[column][..., :3]), (x0, y0))
            if not draw_joints:
                continue
            joints = annotations["joints2d"][frame_index]
            visible = annotations["joints_visible"][frame_index]
            for (u, v), seen in zip(joints, visible):
                if seen:
                    draw.point((x0 + u, y0 + v), fill=(255, 40, 40))
            for box, colour in zip(annotations["hand_boxes"][frame_index], ((60, 220, 60), (60, 140, 255))):
                if np.any(box):
                    draw.rectangle([x0 + box[0], y0 + box[1], x0 + box[2], y0 + box[3]], outline=colour)
    return sheet


def run(args) -> int:
    from blender_addon.core.atomic_io import atomic_write
    from dimo_engine.clips import load_clip
    from dimo_engine.errors import InputError

    if args.max_frames < 1:
        raise InputError(f"--max-frames is {args.max_frames}; ask for at least 1 frame.")
    if not args.out.lower().endswith(".png"):
        raise InputError(f"--out {args.out!r} is not a .png path; name the contact sheet like sheet.png.")
    clip = load_clip(args.clip)
    sheet = contact_sheet(clip, args.max_frames, not args.no_joints)
    with atomic_write(args.out) as temporary:
        sheet.save(temporary)
    print(f"wrote {args.out} ({len(clip.views)} views x {min(args.max_frames, clip.num_frames)} frames)")
    return 0
