"""Each benchmark metric against a transcription of its official code, on fixed arrays.

PIE-Bench: PnPInversion ``evaluation/matrics_calculator.py`` + ``evaluation/evaluate.py`` (torchmetrics
PSNR / MSE / SSIM, CLIPScore on ``np.uint8(img * mask)``, the "Splicing ViT features" structure distance
on DINO's hub ViT). MagicBrush: ``evaluation/image_eval.py`` (nn.L1Loss / nn.MSELoss after
``resize(gt.size)``, CLIP-I / CLIP-T as ``1 - scipy cosine distance``, DINO ViT-S/16 CLS cosine). The
transcriptions follow the official code line by line (comments name the official lines); MaskPix's code
must agree within float32 rounding. The maximum differences are listed in docs/EVALUATION.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskpix_desktop.core import evaluation as ev
from maskpix_desktop.core import metrics as mx
from maskpix_desktop.core.metrics.dino import DinoScorer
from maskpix_desktop.testing.tiny_clip import build_tiny_clip
from maskpix_desktop.testing.tiny_dino import build_tiny_dino

# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 512x512 PIE-size pair (smooth + noise) and a PIE mask with the border marked, as mask_decode."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:512, 0:512]
    base = np.stack([xx * 0.4, yy * 0.3, (xx + yy) * 0.2], axis=2) + rng.normal(0, 20, (512, 512, 3))
    orig = np.clip(base, 0, 255).astype(np.uint8)
    edit = orig.copy()
    edit[150:330, 200:420] = np.clip(edit[150:330, 200:420] * 0.5 + 90, 0, 255).astype(np.uint8)
    edit = np.clip(edit.astype(np.int16) + rng.integers(-6, 7, edit.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((512, 512))
    mask[140:340, 190:430] = 1
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 1  # evaluate.py's mask_decode border
    return orig, edit, mask


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> mx.ClipScorer:
    return mx.ClipScorer.load(**build_tiny_clip(tmp_path_factory.mktemp("clip")))


@pytest.fixture(scope="module")
def dino_b8(tmp_path_factory: pytest.TempPathFactory) -> DinoScorer:
    return DinoScorer.load(build_tiny_dino(tmp_path_factory.mktemp("dino8"), seed=1))


@pytest.fixture(scope="module")
def dino_s16(tmp_path_factory: pytest.TempPathFactory) -> DinoScorer:
    return DinoScorer.load(build_tiny_dino(tmp_path_factory.mktemp("dino16"), seed=2, patch_size=16))


# --------------------------------------------------------------------- DINO hub ViT, transcribed
def _dino_hub_weights(scorer: DinoScorer) -> dict[str, torch.Tensor]:
    """The HF ViT's weights in facebookresearch/dino's VisionTransformer layout (fused qkv)."""
    sd = {k: v.detach().double() for k, v in scorer.model.state_dict().items()}
    out = {
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "patch_w": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_b": sd["embeddings.patch_embeddings.projection.bias"],
        "norm_w": sd["layernorm.weight"],
        "norm_b": sd["layernorm.bias"],
    }
    n = scorer.model.config.num_hidden_layers
    for i in range(n):
        p = f"layers.{i}." if f"layers.{i}.layernorm_before.weight" in sd else f"encoder.layer.{i}."
        att = p + ("attention." if p + "attention.q_proj.weight" in sd else "attention.attention.")
        names = ("q_proj", "k_proj", "v_proj") if att + "q_proj.weight" in sd else ("query", "key", "value")
        o = p + ("attention.o_proj" if p + "attention.o_proj.weight" in sd else "attention.output.dense")
        out[f"{i}.qkv_w"] = torch.cat([sd[f"{att}{m}.weight"] for m in names])
        out[f"{i}.qkv_b"] = torch.cat([sd[f"{att}{m}.bias"] for m in names])
        out[f"{i}.proj_w"], out[f"{i}.proj_b"] = sd[o + ".weight"], sd[o + ".bias"]
        out[f"{i}.norm1_w"], out[f"{i}.norm1_b"] = (
            sd[p + "layernorm_before.weight"],
            sd[p + "layernorm_before.bias"],
        )
        out[f"{i}.norm2_w"], out[f"{i}.norm2_b"] = (
            sd[p + "layernorm_after.weight"],
            sd[p + "layernorm_after.bias"],
        )
        fc1 = p + ("mlp.fc1" if p + "mlp.fc1.weight" in sd else "intermediate.dense")
        fc2 = p + ("mlp.fc2" if p + "mlp.fc2.weight" in sd else "output.dense")
        out[f"{i}.fc1_w"], out[f"{i}.fc1_b"] = sd[fc1 + ".weight"], sd[fc1 + ".bias"]
        out[f"{i}.fc2_w"], out[f"{i}.fc2_b"] = sd[fc2 + ".weight"], sd[fc2 + ".bias"]
    out["n"], out["heads"] = torch.tensor(n), torch.tensor(scorer.model.config.num_attention_heads)
    out["patch"] = torch.tensor(scorer.model.config.patch_size)
    return out


def _dino_hub_forward(w: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """dino/vision_transformer.py ``VisionTransformer.forward`` (float64; native size, so
    ``interpolate_pos_encoding`` returns ``pos_embed``); returns (x[:, 0] after norm, every block's qkv)."""
    ln = lambda t, a, b: F.layer_norm(t, t.shape[-1:], w[a], w[b], eps=1e-6)  # noqa: E731
    p = int(w["patch"])
    x = F.conv2d(x.double(), w["patch_w"], w["patch_b"], stride=p).flatten(2).transpose(1, 2)  # PatchEmbed
    x = torch.cat((w["cls_token"].expand(x.shape[0], -1, -1), x), dim=1) + w["pos_embed"]  # prepare_tokens
    qkvs = []
    for i in range(int(w["n"])):  # Block.forward: x = x + attn(norm1(x)); x = x + mlp(norm2(x))
        y = ln(x, f"{i}.norm1_w", f"{i}.norm1_b")
        B, N, C = y.shape
        h = int(w["heads"])
        qkv_out = F.linear(y, w[f"{i}.qkv_w"], w[f"{i}.qkv_b"])  # the hooked block.attn.qkv output
        qkvs.append(qkv_out)
        qkv = qkv_out.reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * (C // h) ** -0.5).softmax(dim=-1)
        y = F.linear((attn @ v).transpose(1, 2).reshape(B, N, C), w[f"{i}.proj_w"], w[f"{i}.proj_b"])
        x = x + y
        y = F.gelu(F.linear(ln(x, f"{i}.norm2_w", f"{i}.norm2_b"), w[f"{i}.fc1_w"], w[f"{i}.fc1_b"]))
        x = x + F.linear(y, w[f"{i}.fc2_w"], w[f"{i}.fc2_b"])
    return ln(x, "norm_w", "norm_b")[:, 0], qkvs


def _official_structure_distance(
    w: dict[str, torch.Tensor], img_pred: np.ndarray, img_gt: np.ndarray
) -> float:
    """calculate_structure_distance(src, tgt, None, None) -> LossG.calculate_global_ssim_loss."""
    from torchvision import transforms
    from torchvision.transforms import Resize

    img_pred = np.array(img_pred).astype(np.float32)  # no / 255 in the official code
    img_gt = np.array(img_gt).astype(np.float32)
    img_pred = torch.unsqueeze(torch.from_numpy(np.transpose(img_pred, axes=(2, 0, 1))), 0)
    img_gt = torch.unsqueeze(torch.from_numpy(np.transpose(img_gt, axes=(2, 0, 1))), 0)
    imagenet_norm = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # torchvision 0.13 (PnPInversion's environment): tensors were resized without antialias
    global_transform = transforms.Compose([Resize(224, max_size=480, antialias=False), imagenet_norm])

    def keys_self_sim(a: torch.Tensor) -> torch.Tensor:  # VitExtractor.get_keys_self_sim_from_input(a, 11)
        qkv = _dino_hub_forward(w, a)[1][-1]  # the last block's qkv (layer_num=11 of 12)
        patch_num, head_num = qkv.shape[1], int(w["heads"])
        embedding_dim = qkv.shape[2] // 3
        keys = qkv.reshape(patch_num, 3, head_num, embedding_dim // head_num).permute(1, 2, 0, 3)[1]
        h, t, d = keys.shape
        concatenated_keys = keys.transpose(0, 1).reshape(t, h * d)
        x = concatenated_keys[None, None, ...][0]  # attn_cosine_sim
        norm1 = x.norm(dim=2, keepdim=True)
        factor = torch.clamp(norm1 @ norm1.permute(0, 2, 1), min=1e-08)
        return (x @ x.permute(0, 2, 1)) / factor

    loss = 0.0
    for a, b in zip(img_gt, img_pred, strict=True):  # calculate_global_ssim_loss(outputs=pred, inputs=gt)
        a, b = global_transform(a), global_transform(b)
        loss += F.mse_loss(keys_self_sim(b.unsqueeze(0)), keys_self_sim(a.unsqueeze(0)))
    return float(loss)


def test_structure_distance_matches_the_official_code(pair, dino_b8: DinoScorer) -> None:
    orig, edit, _ = pair
    w = _dino_hub_weights(dino_b8)
    ours = dino_b8.structure_distance(orig, edit)
    official = _official_structure_distance(w, orig, edit)
    assert official > 0 and ours == pytest.approx(official, rel=1e-4)
    assert dino_b8.structure_distance(orig, orig) == 0.0
    # the keys really come from the last block: the first block's give another number
    assert dino_b8.key_self_similarity(orig).shape == (785, 785)  # CLS + 28 x 28 patches of 8 px


# ------------------------------------------------------------------------------- torchmetrics maths
def _tm_ssim(preds: torch.Tensor, target: torch.Tensor, full_map: bool) -> float:
    """torchmetrics ``_ssim_update`` (gaussian 11, sigma 1.5, data_range 1); <= 1.4 cuts the padding
    border off the map, >= 1.5 averages the whole map."""
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    k = int(3.5 * 1.5 + 0.5) * 2 + 1
    pad = (k - 1) // 2
    dist = torch.arange((1 - k) / 2, (1 + k) / 2, step=1, dtype=preds.dtype)
    gauss = torch.exp(-torch.pow(dist / 1.5, 2) / 2)
    g = (gauss / gauss.sum()).unsqueeze(0)
    kernel = torch.matmul(g.t(), g).expand(3, 1, k, k)
    preds = F.pad(preds, (pad, pad, pad, pad), mode="reflect")
    target = F.pad(target, (pad, pad, pad, pad), mode="reflect")
    outputs = F.conv2d(
        torch.cat((preds, target, preds * preds, target * target, preds * target)), kernel, groups=3
    )
    o = outputs.split(preds.shape[0])
    mu_p2, mu_t2, mu_pt = o[0].pow(2), o[1].pow(2), o[0] * o[1]
    upper = 2 * (o[4] - mu_pt) + c2
    lower = (o[2] - mu_p2) + (o[3] - mu_t2) + c2
    full = ((2 * mu_pt + c1) * upper) / ((mu_p2 + mu_t2 + c1) * lower)
    idx = full if full_map else full[..., pad:-pad, pad:-pad]
    return float(idx.reshape(idx.shape[0], -1).mean(-1).mean())


def _pie_prep(img: np.ndarray, mask3: np.ndarray) -> torch.Tensor:
    """calculate_ssim / calculate_psnr: float32 / 255, times the mask, CHW with a batch axis."""
    x = np.array(img).astype(np.float32) / 255 * np.array(mask3).astype(np.float32)
    return torch.tensor(x).permute(2, 0, 1).unsqueeze(0)


def test_background_psnr_mse_ssim_match_the_official_code(pair) -> None:
    orig, edit, mask = (a[::2, ::2] for a in pair)  # 256 x 256 keeps the test fast
    keep3 = (1 - mask)[:, :, np.newaxis].repeat([3], axis=2)  # evaluate.py: 1 - src_mask
    p, t = _pie_prep(orig, keep3), _pie_prep(edit, keep3)
    mse = float(((p - t) ** 2).mean())  # MeanSquaredError
    psnr = 10 * math.log10(1.0 / mse)  # PeakSignalNoiseRatio(data_range=1.0)
    m = mask.astype(bool)
    assert mx.pie_background_mse(orig, edit, m) == pytest.approx(mse, rel=1e-5)
    assert mx.pie_background_psnr(orig, edit, m) == pytest.approx(psnr, abs=1e-4)
    for layout, full in (("border-cut", False), ("full-map", True)):
        assert mx.pie_background_ssim(orig, edit, m, layout) == pytest.approx(_tm_ssim(p, t, full), abs=2e-6)
    cut, whole = (mx.pie_background_ssim(orig, edit, m, v) for v in mx.SSIM_LAYOUTS)
    assert abs(cut - whole) > 1e-5  # the two layouts really differ on this pair (border black in both)
    with pytest.raises(ValueError, match="SSIM layout"):
        mx.pie_background_ssim(orig, edit, m, "middle")


# ------------------------------------------------------------------------------------------ CLIP
def test_clip_edited_pie_is_the_masked_full_frame(pair, clip: mx.ClipScorer) -> None:
    orig, edit, mask = pair
    prompt = "a grey square on a gradient"
    mask3 = mask[:, :, np.newaxis].repeat([3], axis=2)
    img = np.uint8(np.array(edit) * mask3)  # calculate_clip_similarity(tgt_image, tgt_prompt, tgt_mask)
    f_img, f_txt = clip.image_features([img])[0], clip.text_features([prompt])[0]
    official = max(100 * float((f_img * f_txt).sum()), 0.0)  # torchmetrics CLIPScore
    item = ev.EvalItem("x", "pie", Path("x.png"), "make it grey", prompt=prompt)
    loaded = ev.LoadedItem(orig, mask[...] > 0.5, mask > 0.5)
    out, missing = ev.score_row(orig, edit, loaded, item, ev.Scorers(clip=clip))
    assert out["clip_edited_pie"] == pytest.approx(official, abs=1e-4)
    crop = mx.region_crop(edit, mask > 0.5)
    assert out["clip_edited_crop"] == pytest.approx(clip.score(crop, prompt), abs=1e-4)
    assert np.array_equal(mx.pie_masked_frame(edit, mask > 0.5), img)
    assert "pie_structure" in missing and out["pie_structure"] is None  # no DINO given: missing, not 0


# ------------------------------------------------------------------------------------- MagicBrush
def _scipy_cosine_similarity(u: torch.Tensor, v: torch.Tensor) -> float:
    """``1 - scipy.spatial.distance.cosine(u, v)`` = u.v / (|u| |v|) in float64."""
    u, v = u.double().flatten(), v.double().flatten()
    return float(1 - (1 - (u @ v) / (torch.sqrt(u @ u) * torch.sqrt(v @ v))))


def test_magicbrush_metrics_match_image_eval(clip: mx.ClipScorer, dino_s16: DinoScorer) -> None:
    from PIL import Image
    from torchvision import transforms

    rng = np.random.default_rng(9)
    gen = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    gt = np.clip(rng.normal(120, 50, (120, 160, 3)), 0, 255).astype(np.uint8)
    caption = "a photo of a red car"
    # eval_distance: gen resized to the gt size, ToTensor, nn.L1Loss / nn.MSELoss
    gen_img = Image.fromarray(gen).convert("RGB").resize(Image.fromarray(gt).size)
    a, b = transforms.ToTensor()(gen_img), transforms.ToTensor()(Image.fromarray(gt))
    l1, l2 = float(torch.nn.L1Loss()(a, b)), float(torch.nn.MSELoss()(a, b))
    # eval_clip_i / eval_clip_t: raw encode_image / encode_text features, scipy cosine
    with torch.no_grad():
        fg = clip.model.encode_image(clip.preprocess(Image.fromarray(gen)).unsqueeze(0)).float()
        ft = clip.model.encode_image(clip.preprocess(Image.fromarray(gt)).unsqueeze(0)).float()
        tx = clip.model.encode_text(clip.tokenizer([caption])).float()
    clip_i, clip_t = _scipy_cosine_similarity(fg, ft), _scipy_cosine_similarity(fg, tx)
    # DINO: Resize(256, bicubic), CenterCrop(224), ToTensor, Normalize -> dino_vits16 forward (CLS)
    tf = transforms.Compose(
        [
            transforms.Resize(256, interpolation=3),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    w = _dino_hub_weights(dino_s16)
    dg, dt = (_dino_hub_forward(w, tf(Image.fromarray(x)).unsqueeze(0))[0] for x in (gen, gt))
    dino = _scipy_cosine_similarity(dg, dt)

    item = ev.EvalItem("1-1", "magicbrush", Path("x.png"), "paint it red", prompt=caption)
    m = np.zeros(gen.shape[:2], bool)
    m[10:40, 20:60] = True
    loaded = ev.LoadedItem(gen, m, m, target=gt)
    out, missing = ev.score_row(gen, gen, loaded, item, ev.Scorers(clip=clip, dino_mb=dino_s16))
    assert out["l1"] == pytest.approx(l1, abs=1e-6) and out["l2"] == pytest.approx(l2, abs=1e-6)
    assert out["clip_i"] == pytest.approx(clip_i, abs=1e-5)
    assert out["clip_t"] == pytest.approx(clip_t, abs=1e-5)  # raw cosine: not x100, not clamped
    assert out["dino"] == pytest.approx(dino, abs=1e-5)
    assert not missing.get("dino") and "pie_structure" not in out  # MagicBrush rows: no structure distance


def test_magicbrush_without_caption_or_dino_is_missing_with_reason(clip: mx.ClipScorer) -> None:
    img = np.full((32, 32, 3), 100, np.uint8)
    m = np.zeros((32, 32), bool)
    m[4:9, 4:9] = True
    item = ev.EvalItem("1-1", "magicbrush", Path("x.png"), "paint it red")  # no caption
    scorers = ev.Scorers(clip=clip, missing={"dino": "dino_vits16 is not in /models"})
    out, missing = ev.score_row(img, img, ev.LoadedItem(img, m, m, target=img), item, scorers)
    assert out["clip_t"] is None and "caption" in missing["clip_t"]
    assert out["dino"] is None and missing["dino"] == "dino_vits16 is not in /models"
    assert out["clip_i"] == pytest.approx(1.0, abs=1e-5) and out["l2"] == 0.0
