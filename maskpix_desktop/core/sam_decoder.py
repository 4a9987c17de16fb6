"""SAM's mask decoder for one prompt set, re-associated to do less work: same maths, other rounding.

``Segmenter`` calls :func:`decode_fast` per click unless it was built with ``decoder="exact"``. The
decoder attends between a handful of prompt tokens (T = 5 output tokens + the prompts, usually 7) and
N = 64 x 64 image tokens; SAM projects all N image tokens to the attention width Di = 128 four times per
click. Because T x heads (56) < Di, the same products are cheaper the other way round:

* token -> image: ``q_h . (Wk_h y + bk_h)`` = ``(Wk_h^T q_h) . y`` + a term constant over the keys,
  which the softmax cancels; ``sum_i a_i (Wv_h y_i + bv_h)`` = ``Wv_h (sum_i a_i y_i) + bv_h``. The
  image tokens are multiplied by a (T*H x E) matrix instead of being projected to Di twice.
* image -> token: ``(Wq_h y + bq_h) . k_h`` = ``y . (Wq_h^T k_h) + bq_h . k_h`` and the output
  projection is moved onto the T value vectors: ``Wo (sum_j a_j v_j) = sum_j a_j (Wo_h v_j)``.
* attention scores are laid out (heads, T, N), so every softmax runs along a contiguous axis, and the
  first layer's image-only projections are cached per image already split into heads.
* the output upscaling (ConvTranspose2d k2 s2 -> LayerNorm2d -> GELU -> ConvTranspose2d k2 s2 -> GELU)
  is two matrix products on channels-last pixel rows with ``F.layer_norm``; only the K-channel masks
  are put back in image order.

Results equal SAM's module up to float32 rounding (tests/core/test_sam_decoder.py bounds the difference);
the exact path stays available for bit-for-bit work (``Segmenter(decoder="exact")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock

__all__ = [
    "FirstLayer",
    "decode_fast",
    "fast_decoder_supported",
    "image_rows",
    "split_heads",
    "upscale_masks",
]


def fast_decoder_supported(decoder: torch.nn.Module) -> bool:
    """True when the decoder's upscaling has SAM's layout (what :func:`upscale_masks` assumes)."""
    up = getattr(decoder, "output_upscaling", None)
    if not isinstance(decoder, MaskDecoder) or not isinstance(up, torch.nn.Sequential) or len(up) != 5:
        return False
    ct1, ln, act1, ct2, act2 = up
    convs_ok = all(
        isinstance(c, torch.nn.ConvTranspose2d)
        and c.kernel_size == (2, 2)
        and c.stride == (2, 2)
        and c.padding == (0, 0)
        and c.output_padding == (0, 0)
        and c.dilation == (1, 1)
        and c.groups == 1
        and c.bias is not None
        for c in (ct1, ct2)
    )
    return (
        convs_ok
        and isinstance(ln, LayerNorm2d)
        and all(isinstance(a, torch.nn.GELU) for a in (act1, act2))
        and all(isinstance(a, Attention) for a in _attentions(decoder))
    )


def _attentions(decoder: MaskDecoder) -> list[torch.nn.Module]:
    tr = decoder.transformer
    out = [tr.final_attn_token_to_image]
    for layer in tr.layers:
        out += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    return out


def _heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """(T, Di) -> (H, T, d)."""
    t, di = x.shape
    return x.view(t, attn.num_heads, di // attn.num_heads).transpose(0, 1)


def split_heads(attn: Attention, x: torch.Tensor, *, keys_last: bool) -> torch.Tensor:
    """Projected image tokens (N, Di) -> contiguous (H, d, N) if ``keys_last`` else (H, N, d)."""
    n, di = x.shape
    h = attn.num_heads
    x = x.view(n, h, di // h)
    return (x.permute(1, 2, 0) if keys_last else x.transpose(0, 1)).contiguous()


def _token_to_image(
    attn: Attention,
    q_tokens: torch.Tensor,
    k_image: torch.Tensor | None,
    v_image: torch.Tensor | None,
    *,
    k_heads: torch.Tensor | None = None,
    v_heads: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prompt tokens (T, E) attend to image tokens (N, E); returns (T, E).

    With ``k_heads`` (H, d, N) / ``v_heads`` (H, N, d), the image tokens already projected (cached per
    image), this is SAM's per-head product; else the projections are folded into the (T*H) query side.
    """
    h = attn.num_heads
    d = attn.internal_dim // h
    q = _heads(attn, attn.q_proj(q_tokens)) / math.sqrt(d)  # (H, T, d)
    t = q.shape[1]
    if k_heads is not None and v_heads is not None:
        o = torch.softmax(torch.bmm(q, k_heads), dim=-1) @ v_heads  # (H, T, d)
    else:
        assert k_image is not None and v_image is not None
        e = k_image.shape[1]
        wk = attn.k_proj.weight.view(h, d, e)
        g = torch.bmm(q, wk).reshape(h * t, e)  # scores = g @ y^T (+ a per-row constant, dropped)
        a = torch.softmax(g @ k_image.T, dim=-1)  # (H*T, N)
        z = (a @ v_image).view(h, t, e)  # attention-weighted image tokens per head
        wv = attn.v_proj.weight.view(h, d, e)
        o = torch.baddbmm(attn.v_proj.bias.view(h, 1, d), z, wv.transpose(1, 2))  # (H, T, d)
    return attn.out_proj(o.transpose(0, 1).reshape(t, h * d))


def _image_to_token(
    attn: Attention,
    q_image: torch.Tensor | None,
    k_tokens: torch.Tensor,
    v_tokens: torch.Tensor,
    *,
    q_heads: torch.Tensor | None = None,
) -> torch.Tensor:
    """Image tokens (N, E) attend to prompt tokens (T, E); returns (N, E) (before the residual add).

    ``q_heads`` (H, d, N): the image tokens already projected; else the projection is folded in.
    """
    h = attn.num_heads
    d = attn.internal_dim // h
    k = _heads(attn, attn.k_proj(k_tokens)) / math.sqrt(d)  # (H, T, d)
    v = _heads(attn, attn.v_proj(v_tokens))  # (H, T, d)
    t = k.shape[1]
    if q_heads is not None:
        s = torch.bmm(k, q_heads)  # (H, T, N)
    else:
        assert q_image is not None
        e = q_image.shape[1]
        wq = attn.q_proj.weight.view(h, d, e)
        m = torch.bmm(k, wq).reshape(h * t, e)
        c = (k * attn.q_proj.bias.view(h, 1, d)).sum(-1).reshape(h * t, 1)
        s = torch.addmm(c, m, q_image.T).view(h, t, -1)  # (H, T, N)
    n = s.shape[2]
    a = torch.softmax(s, dim=1)  # over the T keys of each head; contiguous along N
    wo = attn.out_proj.weight.view(-1, h, d).permute(1, 2, 0)  # (H, d, E)
    u = torch.bmm(v, wo).reshape(h * t, -1)  # (H*T, E): each value vector through its head's out rows
    return torch.addmm(attn.out_proj.bias, a.view(h * t, n).T, u)


def _factor(attn: Attention, tokens: int) -> bool:
    """Fold the projections into the token side when that is the smaller product."""
    return attn.num_heads * tokens < attn.internal_dim


def _token_to_image_any(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if _factor(attn, q.shape[0]):
        return _token_to_image(attn, q, k, v)
    k_heads = split_heads(attn, attn.k_proj(k), keys_last=True)
    return _token_to_image(
        attn, q, None, None, k_heads=k_heads, v_heads=split_heads(attn, attn.v_proj(v), keys_last=False)
    )


def _image_to_token_any(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if _factor(attn, k.shape[0]):
        return _image_to_token(attn, q, k, v)
    return _image_to_token(attn, None, k, v, q_heads=split_heads(attn, attn.q_proj(q), keys_last=True))


@dataclass(frozen=True)
class FirstLayer:
    """The first layer's prompt-independent tensors of one image (no ``mask_input``), cached per image.

    ``keys`` (N, E) image tokens (embedding + no-mask embedding), ``k`` = keys + positional encoding;
    ``tti_k`` (H, d, N) / ``tti_v`` (H, N, d): token-to-image keys and values; ``itt_q`` (H, d, N):
    image-to-token queries.
    """

    keys: torch.Tensor
    k: torch.Tensor
    tti_k: torch.Tensor
    tti_v: torch.Tensor
    itt_q: torch.Tensor

    @classmethod
    def build(cls, decoder: MaskDecoder, keys: torch.Tensor, key_pe: torch.Tensor) -> FirstLayer:
        layer = decoder.transformer.layers[0]
        tti, itt = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        k = keys + key_pe
        return cls(
            keys=keys,
            k=k,
            tti_k=split_heads(tti, tti.k_proj(k), keys_last=True),
            tti_v=split_heads(tti, tti.v_proj(keys), keys_last=False),
            itt_q=split_heads(itt, itt.q_proj(k), keys_last=True),
        )


def _block(
    layer: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    key_pe: torch.Tensor,
    cached: FirstLayer | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayAttentionBlock.forward`` on 2-D tensors; ``cached``: layer 0's image-only tensors."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries[None], k=queries[None], v=queries[None])[0]
    else:
        q = (queries + query_pe)[None]
        queries = queries + layer.self_attn(q=q, k=q, v=queries[None])[0]
    queries = layer.norm1(queries)

    tti, itt = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    q = queries + query_pe
    if cached is not None:
        k = cached.k
        attn_out = _token_to_image(tti, q, None, None, k_heads=cached.tti_k, v_heads=cached.tti_v)
    else:
        k = keys + key_pe
        attn_out = _token_to_image_any(tti, q, k, keys)
    queries = layer.norm2(queries + attn_out)
    queries = layer.norm3(queries + layer.mlp(queries))

    q = queries + query_pe
    if cached is not None:
        attn_out = _image_to_token(itt, None, q, queries, q_heads=cached.itt_q)
    else:
        attn_out = _image_to_token_any(itt, k, q, queries)
    keys = layer.norm4(keys + attn_out)
    return queries, keys


def upscale_masks(decoder: MaskDecoder, keys: torch.Tensor, hw: tuple[int, int], hyper: torch.Tensor):
    """Low-res mask logits (K, 4h, 4w) from the final image tokens ``keys`` (h*w, E) and ``hyper`` (K, C).

    ``ConvTranspose2d(k=2, s=2)`` writes each input pixel's 2 x 2 output block from one matrix product:
    out[co, 2i+a, 2j+b] = bias[co] + sum_ci x[ci, i, j] W[ci, co, a, b]. Rows stay in (i, j, a1, b1, a2,
    b2) order through both convolutions, LayerNorm (over channels, per pixel) and GELU; only the K mask
    channels are permuted into image order at the end.
    """
    ct1, ln, act1, ct2, act2 = decoder.output_upscaling
    h, w = hw
    c1, c2 = ct1.out_channels, ct2.out_channels
    w1 = ct1.weight.permute(0, 2, 3, 1).reshape(ct1.in_channels, 4 * c1)
    y = torch.addmm(ct1.bias.repeat(4), keys, w1).view(h * w * 4, c1)
    y = act1(F.layer_norm(y, (c1,), ln.weight, ln.bias, ln.eps))
    w2 = ct2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
    y = act2(torch.addmm(ct2.bias.repeat(4), y, w2).view(h * w * 16, c2))
    k = hyper.shape[0]
    m = (y @ hyper.T).view(h, w, 2, 2, 2, 2, k)  # (i, j, a1, b1, a2, b2, K)
    return m.permute(6, 0, 2, 4, 1, 3, 5).reshape(k, 4 * h, 4 * w)


def image_rows(x: torch.Tensor) -> torch.Tensor:
    """(1, E, h, w) -> contiguous (h*w, E), rows in (i, j) order (SAM's ``flatten(2).permute(0, 2, 1)``)."""
    return x[0].flatten(1).T.contiguous()


def decode_fast(
    decoder: MaskDecoder,
    keys: torch.Tensor,
    key_pe: torch.Tensor,
    hw: tuple[int, int],
    sparse: torch.Tensor,
    multimask: bool,
    cached: FirstLayer | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.forward`` for one prompt set: (K, 4h, 4w) low-res logits and (K,) IoU predictions.

    ``keys`` (N, E): :func:`image_rows` of image embedding + dense prompt embedding; ``key_pe`` (N, E):
    rows of the dense positional encoding; ``sparse`` (1, S, E); ``cached``: :class:`FirstLayer` for
    ``keys`` when there is no mask prompt.
    """
    tr = decoder.transformer
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight, sparse[0]], dim=0)
    queries = tokens
    for i, layer in enumerate(tr.layers):
        queries, keys = _block(layer, queries, keys, tokens, key_pe, cached if i == 0 else None)
    q = queries + tokens
    attn_out = _token_to_image_any(tr.final_attn_token_to_image, q, keys + key_pe, keys)
    hs = tr.norm_final_attn(queries + attn_out)

    wanted = range(1, decoder.num_mask_tokens) if multimask else range(0, 1)
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i](hs[1 + i]) for i in wanted])
    masks = upscale_masks(decoder, keys, hw, hyper)
    iou = decoder.iou_prediction_head(hs[0:1])[0]
    return masks, iou[wanted.start : wanted.stop]
