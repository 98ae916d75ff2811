"""A small Vision Transformer for the study, and its two self-supervised pretexts.

``TinyViT`` returns tokens (B, 1 + P, D) with one class token first (``num_prefix_tokens =
1``, as timm's ViTs), so the PyTorch layer pools it like a timm model. Pretexts:

- masked autoencoding (He et al., 2022): most patches are dropped, the encoder sees the
  rest, a light decoder reconstructs the pixels of the dropped ones (loss on those only);
- rotation prediction (Gidaris et al., 2018): each image is rotated by 0, 90, 180 or 270
  degrees and the encoder's pooled features predict which.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TinyViT", "MaskedAutoencoder", "RotationPretext"]


def _blocks(dim: int, depth: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim,
        heads,
        dim_feedforward=4 * dim,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class TinyViT(nn.Module):
    """Patch embedding, learned positions, a class token, pre-norm transformer blocks."""

    num_prefix_tokens = 1

    def __init__(
        self,
        img_size: int = 8,
        patch: int = 2,
        channels: int = 1,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
    ):
        super().__init__()
        if img_size % patch:
            raise ValueError(f"img_size {img_size} is not a multiple of patch {patch}")
        self.img_size, self.patch, self.channels, self.dim = img_size, patch, channels, dim
        self.num_patches = (img_size // patch) ** 2
        self.embed = nn.Linear(channels * patch * patch, dim)
        self.pos = nn.Parameter(torch.zeros(1, self.num_patches, dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim)
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, P, C * p * p)."""
        b, c, p = x.shape[0], self.channels, self.patch
        x = x.unfold(2, p, p).unfold(3, p, p)  # B, C, H/p, W/p, p, p
        return x.permute(0, 2, 3, 1, 4, 5).reshape(b, self.num_patches, c * p * p)

    def encode(self, patches: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens of the patches (all, or the indices ``keep`` (B, K)), class token first."""
        tokens = self.embed(patches) + self.pos
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, self.dim))
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], 1)
        return self.norm(self.blocks(tokens))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.patchify(x))


class MaskedAutoencoder(nn.Module):
    """Encoder = a TinyViT; decoder = one transformer block over encoded visible tokens and
    mask tokens, then a linear map to pixels."""

    def __init__(self, encoder: TinyViT, mask_ratio: float = 0.75, decoder_dim: int = 32):
        super().__init__()
        self.encoder, self.mask_ratio = encoder, mask_ratio
        self.to_decoder = nn.Linear(encoder.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, encoder.num_patches, decoder_dim))
        self.decoder = _blocks(decoder_dim, 1, 4)
        self.to_pixels = nn.Linear(decoder_dim, encoder.channels * encoder.patch**2)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)

    def loss(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        patches = self.encoder.patchify(x)
        b, n, _ = patches.shape
        n_keep = max(1, int(round(n * (1 - self.mask_ratio))))
        noise = torch.rand(b, n, generator=generator, device=x.device)
        shuffle = noise.argsort(1)
        keep, drop = shuffle[:, :n_keep], shuffle[:, n_keep:]
        visible = self.to_decoder(self.encoder.encode(patches, keep)[:, 1:])
        full = self.mask_token.expand(b, n, -1).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, full.shape[2]), visible)
        pred = self.to_pixels(self.decoder(full + self.decoder_pos))
        index = drop[..., None].expand(-1, -1, patches.shape[2])
        return ((torch.gather(pred, 1, index) - torch.gather(patches, 1, index)) ** 2).mean()


class RotationPretext(nn.Module):
    """Predicts the rotation (0/90/180/270 degrees) from the mean patch token."""

    def __init__(self, encoder: TinyViT):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, 4)

    def loss(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        k = torch.randint(0, 4, (x.shape[0],), generator=generator, device=x.device)
        rotated = x.clone()
        for r in range(1, 4):
            rotated[k == r] = torch.rot90(x[k == r], r, dims=(2, 3))
        feats = self.encoder(rotated)[:, 1:].mean(1)
        return nn.functional.cross_entropy(self.head(feats), k)
