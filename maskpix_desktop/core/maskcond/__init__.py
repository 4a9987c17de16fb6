"""Mask-conditioned InstructPix2Pix: a UNet that takes the edit mask as a 9th input channel (issue 15).

Modules (all Qt-free): :mod:`.model` (grow ``conv_in``, the conditioning JSON, save / load),
:mod:`.pipeline` (the diffusers pipeline that feeds the mask), :mod:`.synthetic` (a learnable toy task),
:mod:`.augment` (mask jitter and conditioning dropout), :mod:`.train` (accelerate training with exact
resume) and :mod:`.proof` (mask UNet vs plain UNet on held-out synthetic items, in latent space).
"""

from __future__ import annotations

CONDITIONING_FILE = "maskpix_conditioning.json"
"""The file that marks a diffusers folder as a mask-conditioned checkpoint."""
