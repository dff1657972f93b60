"""The engine's networks: motion encoders, the DiMo transformer and the 2D keypoint locator."""

from dimo_engine.models.keypoint_locator import KeypointLocator
from dimo_engine.models.motion_encoder import MotionEncoder
from dimo_engine.models.transformer_dimo import DiMoTransformer3DModel

__all__ = ["DiMoTransformer3DModel", "KeypointLocator", "MotionEncoder"]
