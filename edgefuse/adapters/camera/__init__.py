"""Cameras through OpenCV: V4L2 devices, video files, image folders, GStreamer pipelines and Jetson CSI
cameras, as :class:`~edgefuse.types.Message` streams of RGB :class:`~edgefuse.types.Image` payloads.
See :mod:`.sources` for the URIs and :mod:`.grabber` for the live-capture policy."""

from edgefuse.adapters.camera.grabber import Backoff, Capture, GrabbedFrame, Grabber, GrabberStats
from edgefuse.adapters.camera.sources import (
    SCHEMES,
    CameraSource,
    CameraStats,
    CameraUriError,
    GStreamerMissingError,
    bgr_to_rgb,
    csi_pipeline,
    fourcc_str,
    gstreamer_available,
    open_camera,
    require_gstreamer,
    settings_mismatch,
    split_uri,
)

__all__ = [
    "SCHEMES",
    "Backoff",
    "CameraSource",
    "CameraStats",
    "CameraUriError",
    "Capture",
    "GStreamerMissingError",
    "GrabbedFrame",
    "Grabber",
    "GrabberStats",
    "bgr_to_rgb",
    "csi_pipeline",
    "fourcc_str",
    "gstreamer_available",
    "open_camera",
    "require_gstreamer",
    "settings_mismatch",
    "split_uri",
]
