"""SAM 2's image preprocessing without the channels-first copy of a full-size photo.

transformers' ``Sam2ImageProcessor`` turns an (H, W, 3) array into a contiguous (3, H, W) tensor before
resizing it, and on a CPU with a native uint8 resize torchvision's kernel packs that tensor back into
channels-last order to resize it: two full-size copies, ~0.12 s of a 24 MP photo. Handing the resize a
channels-first *view* of the array runs the same kernel on the same bytes, so the pixel values are equal
bit for bit; where torchvision has no native uint8 resize the processor's own path runs unchanged.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch


def _native_uint8_bilinear() -> bool:
    """True where torchvision resizes uint8 images with its own (channels-last) bilinear kernel on the CPU."""
    try:
        from torchvision.transforms.v2.functional import InterpolationMode
        from torchvision.transforms.v2.functional._geometry import _do_native_uint8_resize_on_cpu
    except ImportError:  # another torchvision layout: keep the processor's own path
        return False
    return bool(_do_native_uint8_resize_on_cpu(InterpolationMode.BILINEAR))


def channels_last_processor(processor: Any) -> Any:
    """``processor`` as a :class:`ChannelsLastSam2ImageProcessor` with the same settings where that is exact
    (a plain ``Sam2ImageProcessor`` with bilinear resizing on a CPU with torchvision's uint8 kernel);
    otherwise ``processor`` itself."""
    from transformers import Sam2ImageProcessor
    from transformers.image_utils import PILImageResampling

    if type(processor) is not Sam2ImageProcessor or not _native_uint8_bilinear():
        return processor
    if processor.resample != PILImageResampling.BILINEAR or not processor.do_resize:
        return processor
    return _subclass().from_dict(processor.to_dict())


@cache
def _subclass() -> type:
    """The subclass, defined at first use (transformers is imported lazily, as by the SAM 2 loader)."""
    from transformers import Sam2ImageProcessor
    from transformers.image_utils import ChannelDimension

    class ChannelsLastSam2ImageProcessor(Sam2ImageProcessor):
        """``Sam2ImageProcessor`` keeping an (H, W, 3) uint8 input in memory order up to the resize."""

        def process_image(
            self,
            image: Any,
            do_convert_rgb: bool | None = None,
            input_data_format: Any = None,
            device: Any = None,
            **kwargs: Any,
        ) -> torch.Tensor:
            if (
                isinstance(image, np.ndarray)
                and image.dtype == np.uint8
                and image.ndim == 3
                and image.shape[2] == 3
                and image.flags.c_contiguous
                and input_data_format is not None
                and ChannelDimension(input_data_format) == ChannelDimension.LAST
                and device is None
            ):
                return torch.from_numpy(image).permute(2, 0, 1)  # a view: no copy
            return super().process_image(
                image,
                do_convert_rgb=do_convert_rgb,
                input_data_format=input_data_format,
                device=device,
                **kwargs,
            )

    return ChannelsLastSam2ImageProcessor
