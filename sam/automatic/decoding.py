"""Mask decoding for a batch of single-point prompts on one image embedding, bit for bit equal to
``Sam.decode`` but cheaper.

``Sam.decode`` runs the two-way transformer on a ``B x (g*g) x C`` block of image tokens per call:
at B = 64 prompts and g = 64 every image-side op streams a 268 MB tensor through memory, and the
output upscaling (``B x 4g x 4g x C/8``) is computed for every prompt although the automatic
generator drops most masks on their predicted IoU. :class:`PointGridDecoder` computes the same
function with a different schedule:

- Token-side ops (self-attention, projections of the ``T`` prompt/output tokens, MLPs, heads) run on
  the whole batch, with the same shapes as in ``Sam.decode``. Their small-M matrix products are the
  ones whose rounding depends on the batch size, so they are never split.
- Image-side ops (projections of the ``g*g`` image tokens, attention against the tokens, residuals,
  LayerNorms) run a few prompts at a time, so their operands stay in cache. Row-wise results of
  these ops do not depend on how many prompts share a call; ``tests/sam/automatic/test_decoding.py``
  checks the equality with ``torch.equal``.
- Before the first image->token attention every prompt sees the same image tokens (the "no mask"
  dense embedding is a constant), so the first layer's image-side projections are computed once.
- The IoU head runs before any mask is upscaled; :meth:`DecodedPoints.low_res_masks` upscales only
  the prompts the caller asks for.

The schedule re-states the control flow of ``TwoWayTransformer.forward`` and
``TwoWayAttentionBlock.forward`` (it calls their submodules, so weights and the per-op arithmetic
stay in ``sam.modeling``); :func:`supports` accepts only those exact classes, anything else takes
the plain ``Sam.decode`` path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch

from sam.modeling.mask_decoder import MaskDecoder
from sam.modeling.prompt_encoder import PromptEncoder
from sam.modeling.sam import Sam
from sam.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer

#: Prompts per image-side step. Two keep the per-step working set (about 4 MB of image tokens per
#: prompt at g = 64, plus attention maps) in a CPU's caches; on the 2-core development machine 1, 2
#: and 4 were within noise of each other (vit_b, 64 prompts: about 1.4 s up to the IoU predictions,
#: plus 0.55 s to upscale all 64 prompts, against 4.7 s for Sam.decode).
DEFAULT_CHUNK = 2


def supports(model: Sam) -> bool:
    """Whether ``model`` is built from exactly the modules whose forward passes the schedule mirrors
    (and does not override ``Sam.decode``)."""
    decoder = getattr(model, "mask_decoder", None)
    transformer = getattr(decoder, "transformer", None)
    return (
        isinstance(model, Sam)
        and type(model).decode is Sam.decode
        and type(decoder) is MaskDecoder
        and type(getattr(model, "prompt_encoder", None)) is PromptEncoder
        and type(transformer) is TwoWayTransformer
        and all(type(layer) is TwoWayAttentionBlock for layer in transformer.layers)
        and all(type(a) is Attention for a in _attentions(transformer))
    )


def _attentions(transformer: TwoWayTransformer) -> list[object]:
    out: list[object] = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        out += [layer.self_attn, layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    return out


@dataclass
class DecodedPoints:
    """The decoder state after the transformer, for ``B`` prompt sets.

    ``iou_predictions`` is ``BxT`` float32 in mask-token order (T = 4: token 0 single-mask,
    tokens 1..3 multimask), equal to the second output of ``Sam.decode``.
    """

    iou_predictions: torch.Tensor
    _decoder: MaskDecoder
    _image_tokens: torch.Tensor  # B x (g*g) x C after the transformer
    _hyper_in: torch.Tensor  # B x T x C/8 hypernetwork outputs
    _grid: tuple[int, int]
    _chunk: int

    def low_res_masks(self, prompts: torch.Tensor) -> torch.Tensor:
        """Low-res logits ``Kx T x4gx4g`` float32 of the prompt sets ``prompts`` (``K`` int64 indices),
        equal to ``Sam.decode(...)[0][prompts]``."""
        h, w = self._grid
        out = []
        for start in range(0, int(prompts.numel()), self._chunk):
            index = prompts[start:start + self._chunk]
            upscaled = self._decoder.upscale(self._image_tokens[index], h, w)  # K x 4h x 4w x C/8
            k, h_up, w_up = upscaled.shape[0], upscaled.shape[1], upscaled.shape[2]
            masks = self._hyper_in[index] @ upscaled.reshape(k, h_up * w_up, -1).transpose(1, 2)
            out.append(masks.reshape(k, -1, h_up, w_up))
        if not out:
            return self._image_tokens.new_zeros((0, self._hyper_in.shape[1], 4 * h, 4 * w))
        return torch.cat(out)


class PointGridDecoder:
    """Decodes prompt batches on one embedding with the cache-blocked schedule described above.

    Args:
        model: a :class:`Sam` for which :func:`supports` is true.
        chunk: prompts per image-side step (any value gives the same result).
    """

    def __init__(self, model: Sam, chunk: int = DEFAULT_CHUNK) -> None:
        if not supports(model):
            raise ValueError("PointGridDecoder needs a Sam built from sam.modeling's own decoder modules; "
                             "use Sam.decode for other models")
        if chunk < 1:
            raise ValueError(f"chunk must be a positive number of prompts, got {chunk}")
        self.model = model
        self.chunk = chunk

    @torch.inference_mode()
    def decode(self, image_embedding: torch.Tensor, point_coords: torch.Tensor,
               point_labels: torch.Tensor) -> DecodedPoints:
        """Runs prompt encoder + transformer + IoU head for ``B`` prompt sets.

        Args:
            image_embedding: ``1x256xgxg`` (one image).
            point_coords: ``BxNx2`` ``(x, y)`` in resized-frame pixels (float64 as the reference
                generator passes them, or float32).
            point_labels: ``BxN`` int labels (-1 padding, 0 background, 1 foreground, 2/3 box).

        Returns:
            :class:`DecodedPoints`; masks come from its :meth:`~DecodedPoints.low_res_masks`.
        """
        if image_embedding.ndim != 4 or image_embedding.shape[0] != 1:
            raise ValueError(f"image_embedding must be 1xCxgxg (one image), got {tuple(image_embedding.shape)}")
        model = self.model
        decoder = model.mask_decoder
        transformer = decoder.transformer
        b = point_coords.shape[0]
        _, c, h, w = image_embedding.shape

        sparse = model.prompt_encoder.embed_points(point_coords, point_labels)
        dense = model.prompt_encoder.embed_masks(None, None, 1)
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)

        # Every prompt's image tokens are the same until the first image->token attention: keep one copy.
        src = image_embedding + dense
        keys = src.flatten(2).permute(0, 2, 1).contiguous()  # 1 x HW x C
        key_pe = model.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1).contiguous()

        queries, query_pe = tokens, tokens
        for layer in cast(list[TwoWayAttentionBlock], list(transformer.layers)):
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(queries, queries, queries)
            else:
                q = queries + query_pe
                queries = queries + layer.self_attn(q, q, queries)
            queries = layer.norm1(queries)
            q = queries + query_pe
            queries = layer.norm2(queries + self._token_to_image(layer.cross_attn_token_to_image, q, keys, key_pe))
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + query_pe
            keys = self._image_to_token(layer.cross_attn_image_to_token, layer.norm4, keys, key_pe, q, queries)
        q = queries + query_pe
        attended = self._token_to_image(transformer.final_attn_token_to_image, q, keys, key_pe)
        queries = transformer.norm_final_attn(queries + attended)
        if keys.shape[0] != b:  # a transformer without layers leaves the shared copy
            keys = keys.expand(b, -1, -1)

        iou = decoder.iou_prediction_head(queries[:, 0, :])
        mask_tokens_out = queries[:, 1:1 + decoder.num_mask_tokens, :]
        hyper = [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)]
        hyper_in = torch.stack(hyper, dim=1)
        return DecodedPoints(iou_predictions=iou, _decoder=decoder, _image_tokens=keys,
                             _hyper_in=hyper_in, _grid=(h, w), _chunk=self.chunk)

    def _chunks(self, b: int) -> range:
        return range(0, b, self.chunk)

    def _token_to_image(self, attn: Attention, q_tokens: torch.Tensor, image: torch.Tensor,
                        image_pe: torch.Tensor) -> torch.Tensor:
        """``attn(q_tokens, image + image_pe, image)`` for ``BxTxC`` tokens and ``1|B x HW x C`` image
        tokens -> ``BxTxC``."""
        b = q_tokens.shape[0]
        qh = attn._heads(attn.q_proj(q_tokens))
        scale = math.sqrt(qh.shape[-1])
        shared = image.shape[0] == 1
        if shared:
            kh = attn._heads(attn.k_proj(image + image_pe))
            vh = attn._heads(attn.v_proj(image))
        parts = []
        for s in self._chunks(b):
            e = min(s + self.chunk, b)
            if not shared:
                tokens = image[s:e]
                kh = attn._heads(attn.k_proj(tokens + image_pe))
                vh = attn._heads(attn.v_proj(tokens))
            qc = qh[s:e]
            k_t = kh.permute(0, 1, 3, 2).expand(qc.shape[0], -1, -1, -1)
            weights = (qc @ k_t) / scale
            parts.append(weights.softmax(dim=-1) @ vh.expand(qc.shape[0], -1, -1, -1))
        out = torch.cat(parts)
        _, heads, n, d = out.shape
        return attn.out_proj(out.transpose(1, 2).reshape(b, n, heads * d))

    def _image_to_token(self, attn: Attention, norm: torch.nn.Module, image: torch.Tensor,
                        image_pe: torch.Tensor, k_tokens: torch.Tensor, v_tokens: torch.Tensor) -> torch.Tensor:
        """``norm(image + attn(image + image_pe, k_tokens, v_tokens))`` -> ``B x HW x C`` (new image tokens)."""
        b = k_tokens.shape[0]
        kh = attn._heads(attn.k_proj(k_tokens))
        vh = attn._heads(attn.v_proj(v_tokens))
        shared = image.shape[0] == 1
        if shared:
            qh = attn._heads(attn.q_proj(image + image_pe))
        out = image.new_empty((b, image.shape[1], image.shape[2]))
        for s in self._chunks(b):
            e = min(s + self.chunk, b)
            tokens = image if shared else image[s:e]
            if not shared:
                qh = attn._heads(attn.q_proj(tokens + image_pe))
            qc = qh.expand(e - s, -1, -1, -1)
            weights = (qc @ kh[s:e].permute(0, 1, 3, 2)) / math.sqrt(qc.shape[-1])
            attended = weights.softmax(dim=-1) @ vh[s:e]
            _, heads, n, d = attended.shape
            attended = attn.out_proj(attended.transpose(1, 2).reshape(e - s, n, heads * d))
            out[s:e] = norm(tokens + attended)
        return out
