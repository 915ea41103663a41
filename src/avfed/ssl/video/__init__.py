"""Video pretext tasks by name (``task.args.pretext`` of the ``video_ssl`` task).

Each pretext turns a batch of stored videos ``[B, C, T, H, W]`` into its own inputs and
targets (clip order, playback speed, a pasted patch's path, two clips of one video) and
a loss; importing registers the built-ins.
"""

from avfed.registry import import_submodules
from avfed.ssl.video.base import PretextModel, VideoPretext, pretext_registry, register_pretext

import_submodules(__name__, __path__)

__all__ = ["PretextModel", "VideoPretext", "pretext_registry", "register_pretext"]
