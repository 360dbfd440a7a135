"""Read-only access to Space Ranger outputs and H&E slides.

``read_visium`` turns a Space Ranger run into a :class:`Sample`; ``open_slide`` opens an image
lazily. This room never imports torch and never writes files.
"""

from tmescope.io.sample import Sample
from tmescope.io.slide import Slide, SlideLevel
from tmescope.io.slide_backends import open_slide
from tmescope.io.visium import read_visium

__all__ = ["Sample", "Slide", "SlideLevel", "open_slide", "read_visium"]
