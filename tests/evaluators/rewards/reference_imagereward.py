"""ImageReward's original module tree in plain torch, with the original parameter names.

Written from BLIP's models/vit.py (timm-style ViT: patch_embed.proj, cls_token, pos_embed, blocks.N.{norm1,
attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm; LayerNorm eps 1e-6, exact GELU) and models/med.py (BERT
with cross-attention: embeddings.{word_embeddings, position_embeddings, LayerNorm, position_ids},
encoder.layer.N.{attention, crossattention}.{self.{query,key,value}, output.{dense, LayerNorm}},
intermediate.dense, output.{dense, LayerNorm}; extended mask (1 - m) * -10000), plus ImageReward's MLP.
Used as the "official" model that our transformers-based ImageReward must reproduce after key mapping.
"""

import math

import torch
from torch import nn


class ViTAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ViTMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), ViTAttention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), ViTMlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class VisionTransformer(nn.Module):
    def __init__(self, image_size, patch, dim, depth, heads, hidden):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList([ViTBlock(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed[:, : x.shape[1] + 1]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, dim, heads, kv_dim):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(kv_dim, dim), nn.Linear(kv_dim, dim)

    def forward(self, h, mask, context):
        def split(t):
            return t.view(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(context)), split(self.value(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask
        out = scores.softmax(dim=-1) @ v
        return out.transpose(1, 2).reshape(h.shape)


class BertSelfOutput(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, dim, heads, kv_dim, eps):
        super().__init__()
        self.self, self.output = BertSelfAttention(dim, heads, kv_dim), BertSelfOutput(dim, eps)

    def forward(self, h, mask, context):
        return self.output(self.self(h, mask, context), h)


class BertDense(nn.Module):
    def __init__(self, d_in, d_out, eps=None):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(d_out, eps=eps)


class BertLayer(nn.Module):
    def __init__(self, dim, heads, hidden, enc_dim, eps):
        super().__init__()
        self.attention = BertAttention(dim, heads, dim, eps)
        self.crossattention = BertAttention(dim, heads, enc_dim, eps)
        self.intermediate, self.output = BertDense(dim, hidden), BertDense(hidden, dim, eps)

    def forward(self, h, mask, image, image_mask):
        h = self.attention(h, mask, h)
        h = self.crossattention(h, image_mask, image)
        inner = nn.functional.gelu(self.intermediate.dense(h))
        return self.output.LayerNorm(self.output.dense(inner) + h)


class BertEmbeddings(nn.Module):
    def __init__(self, vocab, dim, positions, eps):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim, padding_idx=0)
        self.position_embeddings = nn.Embedding(positions, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.register_buffer("position_ids", torch.arange(positions).expand((1, -1)))  # persistent, as in med.py

    def forward(self, ids):
        positions = self.position_ids[:, : ids.shape[1]]
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions))


class BertEncoder(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class BertModel(nn.Module):
    def __init__(self, vocab, dim, depth, heads, hidden, positions, enc_dim, eps=1e-12):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab, dim, positions, eps)
        self.encoder = BertEncoder([BertLayer(dim, heads, hidden, enc_dim, eps) for _ in range(depth)])

    def forward(self, ids, attention_mask, image):
        mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        image_mask = torch.zeros(image.shape[0], 1, 1, image.shape[1])
        h = self.embeddings(ids)
        for layer in self.encoder.layer:
            h = layer(h, mask, image, image_mask)
        return h


class BLIP(nn.Module):
    def __init__(self, visual_encoder, text_encoder, vision_width, text_width, embed_dim=256):
        super().__init__()
        self.visual_encoder, self.text_encoder = visual_encoder, text_encoder
        self.vision_proj, self.text_proj = nn.Linear(vision_width, embed_dim), nn.Linear(text_width, embed_dim)


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                    nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))


class ReferenceImageReward(nn.Module):
    """r = MLP(text_encoder(ids, image=visual_encoder(pixels))[:, 0]); names as in ImageReward.pt."""

    def __init__(self, blip, mlp):
        super().__init__()
        self.blip, self.mlp = blip, mlp

    @classmethod
    def like(cls, ours) -> "ReferenceImageReward":
        """Same sizes as our ImageReward ``ours``, fresh random weights (LayerNorms randomised too)."""
        v, t = ours.vision.config, ours.text.config
        visual = VisionTransformer(v.image_size, v.patch_size, v.hidden_size, v.num_hidden_layers,
                                   v.num_attention_heads, v.intermediate_size)
        text = BertModel(t.vocab_size, t.hidden_size, t.num_hidden_layers, t.num_attention_heads,
                         t.intermediate_size, t.max_position_embeddings, t.encoder_hidden_size, t.layer_norm_eps)
        model = cls(BLIP(visual, text, v.hidden_size, t.hidden_size), MLP(t.hidden_size))
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name.lower() and name.endswith("weight") else 0))
        return model

    def forward(self, pixels, ids, attention_mask):
        image = self.blip.visual_encoder(pixels)
        h = self.blip.text_encoder(ids, attention_mask, image)
        return self.mlp.layers(h[:, 0, :])
