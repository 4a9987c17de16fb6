"""SAM 2's mask decoder for one prompt set, re-associated and cached per image: same maths, other rounding.

``Sam2Segmenter`` runs :meth:`FastSam2Decoder.decode` per click unless it was built with
``decoder="exact"``. transformers' ``Sam2MaskDecoder`` (given ``image_embeddings``) projects all
N = 64 x 64 image tokens to the attention width four times per two-way layer, adds the dense prompt
embedding and copies its (batch, point batch, heads) reshapes on every click. Here, as
:mod:`.sam_decoder` does for SAM 1 (its attention functions are reused through :class:`AttentionView`):

* per image (:class:`Sam2ImageTensors`, no ``mask_input``): the image tokens as (N, E) rows with the
  no-mask embedding added, the positional-encoded keys, layer 0's token -> image keys / values and
  image -> token queries already projected and split into heads, and the two high-resolution feature
  maps (``conv_s0`` / ``conv_s1`` outputs) with the upscaling convolutions' biases added, laid out in
  the upscaler's block-row order;
* per click: the later layers fold the key / query projections into the few prompt tokens
  (T x heads < attention width) instead of projecting the N image tokens; the upscaling
  (ConvTranspose2d k2 s2 -> + s1 -> LayerNorm2d -> GELU -> ConvTranspose2d k2 s2 -> + s0 -> GELU) is two
  matrix products on channels-last pixel rows; only the K mask channels are put back in image order;
  the object-score head (unused for a still image) is not run.

Results equal the module's up to float32 rounding (tests/core/test_sam2_decoder.py bounds the difference);
the single-mask choice (``dynamic_multimask_via_stability``) is transformers' rule on these logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskpix_desktop.core.sam_decoder import (
    FirstLayer,
    _heads,
    _image_to_token,
    _image_to_token_any,
    _token_to_image,
    _token_to_image_any,
    image_rows,
    split_heads,
)

__all__ = ["AttentionView", "FastSam2Decoder", "Sam2ImageTensors", "fast_sam2_decoder_supported"]


@dataclass(frozen=True)
class AttentionView:
    """A transformers ``Sam2Attention`` under SAM 1's attribute names (what :mod:`.sam_decoder` reads)."""

    num_heads: int
    internal_dim: int
    q_proj: nn.Linear
    k_proj: nn.Linear
    v_proj: nn.Linear
    out_proj: nn.Linear

    @classmethod
    def of(cls, attn: Any) -> AttentionView:
        return cls(
            int(attn.num_attention_heads),
            int(attn.internal_dim),
            attn.q_proj,
            attn.k_proj,
            attn.v_proj,
            attn.o_proj,
        )


def _attentions(decoder: Any) -> list[Any]:
    tr = decoder.transformer
    out = [tr.final_attn_token_to_image]
    for layer in tr.layers:
        out += [layer.self_attn, layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    return out


def fast_sam2_decoder_supported(decoder: Any) -> bool:
    """True when ``decoder`` is transformers' ``Sam2MaskDecoder`` with the layout this module assumes."""
    try:
        from transformers.models.sam2.modeling_sam2 import Sam2Attention, Sam2LayerNorm, Sam2MaskDecoder
    except ImportError:
        return False
    if type(decoder) is not Sam2MaskDecoder:
        return False
    convs = (decoder.upscale_conv1, decoder.upscale_conv2)
    convs_ok = all(
        isinstance(c, nn.ConvTranspose2d)
        and c.kernel_size == (2, 2)
        and c.stride == (2, 2)
        and c.padding == (0, 0)
        and c.output_padding == (0, 0)
        and c.dilation == (1, 1)
        and c.groups == 1
        and c.bias is not None
        for c in convs
    )
    attn_ok = all(
        type(a) is Sam2Attention and a.internal_dim == a.num_attention_heads * a.head_dim
        for a in _attentions(decoder)
    )
    return (
        convs_ok
        and attn_ok
        and type(decoder.upscale_layer_norm) is Sam2LayerNorm
        and decoder.upscale_layer_norm.data_format == "channels_first"
        and type(decoder.activation) is nn.GELU
        and decoder.transformer.layers[0].skip_first_layer_pe
    )


@dataclass(frozen=True)
class Sam2ImageTensors:
    """The prompt-independent tensors of one image (see the module docstring).

    ``hw``: the embedding grid (h, w); ``rows`` (N, E): the image embedding as rows; ``first``: layer 0's
    tensors for the no-mask keys; ``s1`` (h*w, 4*C1) and ``s0`` (h*w*4, 4*C2): the high-resolution maps
    plus the convolution biases, in the upscaler's row order.
    """

    hw: tuple[int, int]
    rows: torch.Tensor
    first: FirstLayer
    s1: torch.Tensor
    s0: torch.Tensor


class FastSam2Decoder:
    """The re-associated decoder of one ``Sam2MaskDecoder`` (holds views of its modules, no copies)."""

    def __init__(self, model: Any):
        """``model``: a transformers ``Sam2Model`` (its mask decoder, positional encoding and no-mask
        embedding are read; nothing is copied but the reshaped upscaling weights)."""
        decoder = model.mask_decoder
        if not fast_sam2_decoder_supported(decoder):
            raise ValueError("not a transformers Sam2MaskDecoder with the standard layout")
        self.decoder = decoder
        with torch.inference_mode():
            self.key_pe = image_rows(model.get_image_wide_positional_embeddings())  # (N, E)
        self._no_mask = model.prompt_encoder.no_mask_embed.weight  # (1, E)
        tr = decoder.transformer
        self._layers = [
            (
                layer,
                AttentionView.of(layer.self_attn),
                AttentionView.of(layer.cross_attn_token_to_image),
                AttentionView.of(layer.cross_attn_image_to_token),
            )
            for layer in tr.layers
        ]
        self._final = AttentionView.of(tr.final_attn_token_to_image)
        c1, c2 = decoder.upscale_conv1, decoder.upscale_conv2
        # ConvTranspose2d(k2, s2) as one product per input pixel: columns ordered (a, b, out channel)
        self._w1 = c1.weight.permute(0, 2, 3, 1).reshape(c1.in_channels, 4 * c1.out_channels)
        self._w2 = c2.weight.permute(0, 2, 3, 1).reshape(c2.in_channels, 4 * c2.out_channels)

    def prepare(self, features: tuple[torch.Tensor, ...]) -> Sam2ImageTensors:
        """Per-image tensors from ``get_image_embeddings``' (s0, s1, embedding), each (1, C, H, W)."""
        s0, s1, emb = features
        h, w = int(emb.shape[-2]), int(emb.shape[-1])
        rows = image_rows(emb)
        keys = rows + self._no_mask
        _, tti, itt = self._layers[0][1:]
        k = keys + self.key_pe
        first = FirstLayer(
            keys=keys,
            k=k,
            tti_k=split_heads(tti, tti.k_proj(k), keys_last=True),
            tti_v=split_heads(tti, tti.v_proj(keys), keys_last=False),
            itt_q=split_heads(itt, itt.q_proj(k), keys_last=True),
        )
        s1_rows, s0_rows = self.high_res_rows(s0, s1)
        return Sam2ImageTensors(hw=(h, w), rows=rows, first=first, s1=s1_rows, s0=s0_rows)

    def high_res_rows(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, C1, 2h, 2w) and (1, C2, 4h, 4w) maps -> the upscaler's rows plus the convolution biases:
        s1[c, 2i+a, 2j+b] -> row (i, j), column (a, b, c); s0[c, 4i+2a1+a2, 4j+2b1+b2] -> row
        (i, j, a1, b1), column (a2, b2, c)."""
        d = self.decoder
        c1, c2 = int(s1.shape[1]), int(s0.shape[1])
        h, w = int(s1.shape[2]) // 2, int(s1.shape[3]) // 2
        s1_rows = s1[0].view(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0).reshape(h * w, 4 * c1)
        s0_rows = s0[0].view(c2, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0).reshape(h * w * 4, 4 * c2)
        return s1_rows + d.upscale_conv1.bias.repeat(4), s0_rows + d.upscale_conv2.bias.repeat(4)

    def decode(
        self,
        image: Sam2ImageTensors,
        sparse: torch.Tensor,
        dense: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``Sam2MaskDecoder.forward`` for one prompt set: (K, 4h, 4w) low-res logits and (K,) IoU.

        ``sparse`` (S, E): the prompt encoder's sparse embeddings; ``dense`` (1, E, h, w): its mask
        embedding, or None for no ``mask_input`` (the cached layer 0 is used then).
        """
        d = self.decoder
        tokens = torch.cat(
            [d.obj_score_token.weight, d.iou_token.weight, d.mask_tokens.weight, sparse], dim=0
        )
        key_pe = self.key_pe
        if dense is None:
            keys, cached = image.first.keys, image.first
        else:
            keys, cached = image.rows + image_rows(dense), None
        queries = tokens
        for i, (layer, self_attn, tti, itt) in enumerate(self._layers):
            # self-attention of the tokens (layer 0 without positional encoding nor residual)
            if layer.skip_first_layer_pe:
                queries = _self_attention(self_attn, queries, queries, queries)
            else:
                q = queries + tokens
                queries = queries + _self_attention(self_attn, q, q, queries)
            queries = layer.layer_norm1(queries)
            q = queries + tokens
            first = cached if i == 0 else None
            if first is not None:
                k = first.k
                out = _token_to_image(tti, q, None, None, k_heads=first.tti_k, v_heads=first.tti_v)  # type: ignore[arg-type]
            else:
                k = keys + key_pe
                out = _token_to_image_any(tti, q, k, keys)  # type: ignore[arg-type]
            queries = layer.layer_norm2(queries + out)
            queries = layer.layer_norm3(queries + layer.mlp(queries))
            q = queries + tokens
            if first is not None:
                out = _image_to_token(itt, None, q, queries, q_heads=first.itt_q)  # type: ignore[arg-type]
            else:
                out = _image_to_token_any(itt, k, q, queries)  # type: ignore[arg-type]
            keys = layer.layer_norm4(keys + out)
        q = queries + tokens
        out = _token_to_image_any(self._final, q, keys + key_pe, keys)  # type: ignore[arg-type]
        hs = d.transformer.layer_norm_final_attn(queries + out)

        n_tokens = d.num_mask_tokens
        hyper = torch.stack([d.output_hypernetworks_mlps[i](hs[2 + i]) for i in range(n_tokens)])
        masks = self._upscale(image, keys, hyper)  # (num_mask_tokens, 4h, 4w)
        iou = d.iou_prediction_head(hs[1:2])[0]
        if multimask:
            return masks[1:], iou[1:]
        if d.dynamic_multimask_via_stability and not d.training:
            return self._stable_single(masks, iou)
        return masks[:1], iou[:1]

    def _upscale(self, image: Sam2ImageTensors, keys: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """Low-res logits (K, 4h, 4w) from the final image tokens ``keys`` (h*w, E) and ``hyper`` (K, C2).

        Rows stay in (i, j, a1, b1, a2, b2) order through both convolutions (see
        :func:`.sam_decoder.upscale_masks`), with the cached high-resolution rows added in that order.
        """
        d = self.decoder
        h, w = image.hw
        c1, c2 = d.upscale_conv1.out_channels, d.upscale_conv2.out_channels
        ln = d.upscale_layer_norm
        y = torch.addmm(image.s1, keys, self._w1).view(h * w * 4, c1)
        y = d.activation(F.layer_norm(y, (c1,), ln.weight, ln.bias, ln.eps))
        y = d.activation(torch.addmm(image.s0, y, self._w2).view(h * w * 16, c2))
        k = hyper.shape[0]
        m = (y @ hyper.T).view(h, w, 2, 2, 2, 2, k)  # (i, j, a1, b1, a2, b2, K)
        return m.permute(6, 0, 2, 4, 1, 3, 5).reshape(k, 4 * h, 4 * w)

    def _stable_single(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Sam2MaskDecoder._dynamic_multimask_via_stability`` for one prompt set."""
        d = self.decoder
        delta = d.dynamic_multimask_stability_delta
        single = masks[0].flatten()
        area_i = (single > delta).sum().float()
        area_u = (single > -delta).sum().float()
        stability = area_i / area_u if bool(area_u > 0) else torch.ones(())
        if bool(stability >= d.dynamic_multimask_stability_thresh):
            return masks[:1], iou[:1]
        best = 1 + int(torch.argmax(iou[1:]))
        return masks[best : best + 1], iou[best : best + 1]


def _self_attention(attn: AttentionView, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Multi-head attention among the T prompt tokens (T, E) -> (T, E)."""
    h = attn.num_heads
    d = attn.internal_dim // h
    qh = _heads(attn, attn.q_proj(q)) / math.sqrt(d)  # type: ignore[arg-type]
    kh = _heads(attn, attn.k_proj(k))  # type: ignore[arg-type]
    vh = _heads(attn, attn.v_proj(v))  # type: ignore[arg-type]
    o = torch.softmax(torch.bmm(qh, kh.transpose(1, 2)), dim=-1) @ vh  # (H, T, d)
    return attn.out_proj(o.transpose(0, 1).reshape(q.shape[0], h * d))
