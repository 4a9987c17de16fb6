"""MaskPix Desktop: SAM masks + InstructPix2Pix edits, blended only where you want them.

Importing this package must stay cheap: no torch, no Qt, no diffusers at import time.
"""

__version__ = "0.1.0"
