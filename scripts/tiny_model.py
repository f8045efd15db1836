"""Model pieces of ``pretrain_tiny.py``: initialisation, the connector's replacement, the vision
side's features, the dense slot losses, the oracle visual tokens and the answer loss."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F


def init_model(model, args) -> None:
    """Initialisation that lets the image reach the language model."""
    g = torch.Generator().manual_seed(args.seed)
    res = model.model.connector.perceiver_resampler
    with torch.no_grad():
        # Distinct latent queries (built from a config they are all ones), small so the attended
        # image content dominates the residual stream.
        res.latents.copy_(torch.randn(res.latents.shape, generator=g) * args.latent_init_std)
        # Visual tokens leave the perceiver's RMSNorm with unit RMS; scale text embeddings to match.
        emb = model.model.text_model.get_input_embeddings().weight
        emb.copy_(torch.randn(emb.shape, generator=g) * args.text_embed_std)


def resize_latents(model, processor, n: int, args) -> None:
    """Give the perceiver ``n`` latent queries when ``--latent-grid`` asks for a different number
    than the checkpoint has; every other weight is kept. When ``n`` is ``--latents-per-patch``
    times the old count (an anchored grid split side by side), each old latent is copied into its
    patch's new latents, with a small random offset each to tell them apart, so the routing the
    connector learnt holds from the first step; otherwise the queries are fresh and random."""
    res = model.model.connector.perceiver_resampler
    old = res.latents.size(0)
    if old == n:
        return
    fresh = random_latents(n, res.latents.size(1), args)
    split = args.latents_per_patch
    if split > 1 and n == old * split:
        with torch.no_grad():
            rows = args.latent_grid[1]
            copied = res.latents.view(rows, -1, res.latents.size(1)).repeat_interleave(split, dim=1)
            fresh = copied.reshape(n, -1) + fresh
    res.latents = torch.nn.Parameter(fresh)
    res.n_latents = n
    use_latent_count(model, processor, n)


def random_latents(n: int, width: int, args) -> torch.Tensor:
    """Distinct, small latent queries (built from a config they are all ones, so every latent is
    identical), so the attended image content dominates the residual stream."""
    g = torch.Generator().manual_seed(args.seed)
    return torch.randn(n, width, generator=g) * args.latent_init_std


def use_latent_count(model, processor, n: int) -> None:
    """Make the config, the model and the processor agree on ``n`` visual tokens per image."""
    model.config.perceiver_config.resampler_n_latents = n
    processor.image_seq_len = n
    model.model.image_seq_len = n


def fresh_connector(model, processor, n: int, args) -> None:
    """Replace the connector (modality projection + perceiver) with a freshly initialised one of
    ``--perceiver-depth`` layers and ``--perceiver-kv-heads`` key/value heads; the vision encoder
    and the language model keep their weights. A connector trained while it could not route drops
    the glyph information the encoder has (a linear probe on its output reads half as many
    characters as one on the encoder's), so it is cheaper to start it again."""
    from transformers.models.idefics2.modeling_idefics2 import Idefics2Connector

    pc = model.config.perceiver_config
    pc.resampler_depth = args.perceiver_depth
    pc.num_key_value_heads = args.perceiver_kv_heads
    use_latent_count(model, processor, n)
    torch.manual_seed(args.seed)
    conn = Idefics2Connector(model.config)
    conn.apply(model._init_weights)
    with torch.no_grad():
        conn.perceiver_resampler.latents.copy_(random_latents(n, pc.hidden_size, args))
    model.model.connector = conn


def grow_text_layers(model, after: list) -> None:
    """Insert a decoder layer into the language model after each layer index in ``after``: a copy
    of that layer whose attention output and MLP down projections are zero, so the new layer adds
    nothing to the residual stream and the model computes exactly what it did. Training then
    grows the new layers from there (their zero projections get gradients at once)."""
    text = model.model.text_model
    text.layers = grown_layers(text.layers, after, "language model",
                               lambda layer: (layer.self_attn.o_proj, layer.mlp.down_proj))
    for i, layer in enumerate(text.layers):
        layer.self_attn.layer_idx = i
    model.config.text_config.num_hidden_layers = len(text.layers)


def grow_vision_layers(model, after: list) -> None:
    """``grow_text_layers`` for the vision encoder: the copies' attention output and second MLP
    projections (weights and biases) are zero."""
    encoder = model.model.vision_model.encoder
    encoder.layers = grown_layers(encoder.layers, after, "vision encoder",
                                  lambda layer: (layer.self_attn.out_proj, layer.mlp.fc2))
    model.config.vision_config.num_hidden_layers = len(encoder.layers)


def grow_perceiver_layers(model, after: list) -> None:
    """``grow_text_layers`` for the connector's perceiver: the copies' attention output and MLP
    down projections are zero, so the visual tokens are unchanged. A deeper perceiver lets each
    latent, anchored on its patch by the first layer, gather from the patches around it."""
    resampler = model.model.connector.perceiver_resampler
    resampler.layers = grown_layers(resampler.layers, after, "perceiver",
                                    lambda layer: (layer.self_attn.o_proj, layer.mlp.down_proj))
    model.config.perceiver_config.resampler_depth = len(resampler.layers)


def grown_layers(layers, after: list, name: str, outputs) -> torch.nn.ModuleList:
    """``layers`` with a copy of layer ``i`` inserted after it for each ``i`` in ``after``, the
    copy's residual ``outputs(layer)`` projections zeroed."""
    outside = sorted(set(after) - set(range(len(layers))))
    if outside:
        raise ValueError(f"cannot grow after layer(s) {outside}: the {name} has {len(layers)} "
                         f"layers, numbered 0-{len(layers) - 1}")
    grown = torch.nn.ModuleList()
    for i, layer in enumerate(layers):
        grown.append(layer)
        if i in after:
            extra = copy.deepcopy(layer)
            for proj in outputs(extra):
                torch.nn.init.zeros_(proj.weight)
                if proj.bias is not None:
                    torch.nn.init.zeros_(proj.bias)
            grown.append(extra)
    return grown


def resize_patches(model, processor, patch: int) -> None:
    """Give the vision encoder ``patch``-pixel patches over the same grid of patches, so each
    patch sees more (or fewer) pixels of the page while the encoder, the connector and the number
    of visual tokens stay as they are. The patch embedding is resized as in FlexiViT
    (arXiv:2212.08013): the new kernel is the least-norm one whose response to a bilinearly
    resized patch equals the old kernel's response to the patch, so the model computes what it did
    on an upsampled page, and training goes on from there to use the finer detail."""
    vision = model.model.vision_model
    old_conv = vision.embeddings.patch_embedding
    old = old_conv.kernel_size[0]
    if patch == old:
        return
    edge = model.config.vision_config.image_size // old * patch  # the same patches per side
    # Row i: basis patch i resized to the new size; the new kernel w' solves resize^T w' = w.
    basis = torch.eye(old * old).view(old * old, 1, old, old)
    resized = F.interpolate(basis, size=(patch, patch), mode="bilinear", align_corners=False)
    solve = torch.linalg.pinv(resized.view(old * old, -1))  # (patch^2, old^2)
    with torch.no_grad():
        w = old_conv.weight.flatten(2)  # (out, in, old^2)
        new_w = (w @ solve.T).view(*w.shape[:2], patch, patch)
    conv = torch.nn.Conv2d(old_conv.in_channels, old_conv.out_channels, patch, stride=patch, padding="valid")
    conv.weight = torch.nn.Parameter(new_w)
    conv.bias = old_conv.bias
    model.config.vision_config.patch_size = patch  # the vision model's own config object
    model.config.vision_config.image_size = edge
    vision.embeddings.patch_embedding = conv
    vision.embeddings.patch_size = patch
    vision.embeddings.image_size = edge
    size = dict(processor.image_processor.size)  # a SizeDict, which ** does not unpack
    size["longest_edge"] = edge
    processor.image_processor.size = size


def image_features(model, batch, freeze_vision: bool = False):
    pv = batch["pixel_values"][:, 0]
    pam = batch["pixel_attention_mask"][:, 0]
    p = model.config.vision_config.patch_size
    sub = pam.unfold(1, p, p).unfold(2, p, p)
    patch_mask = sub.sum(dim=(-1, -2)) == p * p
    with torch.set_grad_enabled(torch.is_grad_enabled() and not freeze_vision):
        vis = model.model.vision_model(pixel_values=pv, patch_attention_mask=patch_mask).last_hidden_state
    lat = model.model.connector(vis, attention_mask=patch_mask.view(pv.size(0), -1))
    return vis, lat


def page_position_ids(rh: int, rw: int, r0: int, c0: int, rows: int, cols: int, per_side: int) -> torch.Tensor:
    """Position ids of patches ``r0:r0+rows, c0:c0+cols`` of a page of ``rh x rw`` patches, as
    Idefics2's vision embeddings compute them for the whole page (fractional coordinates
    bucketed into ``per_side`` buckets per side). Fed a crop alone, the embeddings would stretch it
    over every bucket, and the position embeddings of whole pages would never be trained."""
    boundaries = torch.arange(1 / per_side, 1.0, 1 / per_side)
    h = torch.bucketize((torch.arange(r0, r0 + rows) / rh).clamp(max=1 - 1e-6), boundaries, right=True)
    w = torch.bucketize((torch.arange(c0, c0 + cols) / rw).clamp(max=1 - 1e-6), boundaries, right=True)
    return (h[:, None] * per_side + w[None, :]).reshape(-1)


def crop_features(vision, pixels: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """The vision encoder on crops, with the position ids the patches have in their pages."""
    emb = vision.embeddings
    x = emb.patch_embedding(pixels).flatten(2).transpose(1, 2) + emb.position_embedding(position_ids)
    return vision.post_layernorm(vision.encoder(inputs_embeds=x).last_hidden_state)


def patch_rows_cols(pam: torch.Tensor, patch: int) -> tuple:
    """(B, patches) row and column of every real patch of each page (-100 on padding)."""
    B, Hm, Wm = pam.shape
    nh, nw = Hm // patch, Wm // patch
    rows = torch.arange(nh)[:, None].expand(nh, nw).reshape(1, -1).repeat(B, 1)
    cols = torch.arange(nw)[None, :].expand(nh, nw).reshape(1, -1).repeat(B, 1)
    real = (pam.unfold(1, patch, patch).unfold(2, patch, patch).sum(dim=(-1, -2)) == patch * patch).view(B, -1)
    return rows.masked_fill(~real, -100), cols.masked_fill(~real, -100)


def slot_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple:
    """(correct, total) over the slots that hold a character."""
    ink = targets > 0
    return int((logits.argmax(-1)[ink] == targets[ink]).sum()), int(ink.sum())


def slot_loss(logits, targets, none_weight: float):
    """Cross-entropy over character slots, averaged over the slots holding a character, plus
    ``none_weight`` times the average over empty slots (most slots are empty: averaging over all
    of them would drown the glyph signal)."""
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1).clamp(min=0), reduction="none")
    t = targets.reshape(-1)
    ink, empty = t > 0, t == 0
    return ce[ink].sum() / ink.sum().clamp(min=1) + none_weight * ce[empty].sum() / empty.sum().clamp(min=1)


def slot_head(head, features: torch.Tensor, targets: torch.Tensor, slots: int, none_weight: float) -> tuple:
    """``slot_loss`` of a linear character head on ``features`` (B, N, width) against ``targets``
    (B, N, slots), and the share of the characters it names right."""
    logits = head(features).view(*features.shape[:2], slots, -1)
    right, total = slot_accuracy(logits.detach(), targets)
    return slot_loss(logits, targets, none_weight), right / max(total, 1)


class OracleTokens(torch.nn.Module):
    """The visual tokens an ideal connector would give: each latent's characters, embedded.

    Latent ``i`` holding characters ``c_0 .. c_k`` (its ``latent_targets`` slots) becomes
    ``sum_s W_s E[c_s]``, scaled to unit RMS like the perceiver's output, where ``E`` is a fixed
    snapshot of the language model's input embeddings and ``W_s`` a fixed random rotation per slot
    (``W_0`` the identity, so a latent's first character reads as that character). A latent without
    characters is the space. Two uses:

    * the language model learns to read and copy from these clean tokens (``--oracle-lm``), without
      the vision encoder and connector in the step, so reading circuits form before the connector
      is good enough to need them;
    * the connector learns to produce them (``--oracle-weight``), so the circuits then apply to the
      page's real visual tokens.

    The tables are buffers: saved with the heads, so every later stage uses the same targets."""

    def __init__(self, embeddings: torch.Tensor, slots: int, blank: int, seed: int):
        super().__init__()
        d = embeddings.size(1)
        g = torch.Generator().manual_seed(seed)
        rotations = [torch.eye(d)] + [torch.linalg.qr(torch.randn(d, d, generator=g))[0] for _ in range(slots - 1)]
        self.register_buffer("codebook", embeddings.detach().clone())
        self.register_buffer("rotations", torch.stack(rotations))
        self.register_buffer("blank", torch.tensor(blank))

    def forward(self, targets: torch.Tensor) -> torch.Tensor:
        """(B, latents, slots) character ids, 0 where a slot is empty -> (B, latents, hidden)."""
        filled = (targets > 0).unsqueeze(-1)
        e = torch.einsum("blsd,sed->blse", self.codebook[targets], self.rotations)
        v = (e * filled).sum(2)
        empty = ~filled.any(2).squeeze(-1)
        v[empty] = self.codebook[self.blank].to(v.dtype)  # under bf16 autocast the einsum is bf16
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6)


def lm_loss(model, batch, lat=None):
    """Answer-token loss with ``lat`` as the visual tokens (none: a text-only batch), and
    statistics: ``answer_acc`` (answers predicted exactly, teacher forced) and ``late`` (the loss
    on answer tokens from the fourth on, where a model that copies from the page is all but sure)."""
    ids = batch["input_ids"]
    emb = model.model.text_model.get_input_embeddings()(ids)
    if lat is not None:
        mask = ids == model.config.image_token_id
        emb = emb.masked_scatter(mask.unsqueeze(-1), lat.reshape(-1, lat.size(-1)).to(emb.dtype))
    hidden = model.model.text_model(inputs_embeds=emb, attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    sel = labels != -100
    logits = model.lm_head(hidden[:, :-1][sel])
    ce = F.cross_entropy(logits, labels[sel], reduction="none")
    right, total = answers_right(logits.detach().argmax(-1) == labels[sel], sel)
    late = sel.clone()
    for k in (1, 2, 3):
        late[:, k:] &= sel[:, :-k]
        late[:, :k] = False
    late = late[sel]
    return ce.mean(), {"answer_acc": right / max(total, 1),
                       "late": float(ce.detach()[late].mean()) if late.any() else float("nan")}


def answers_right(hits: torch.Tensor, sel: torch.Tensor) -> tuple:
    """(answers whose every token is predicted right, answers) under teacher forcing: the answers
    greedy decoding would reproduce exactly. ``hits`` follows ``sel``'s True entries row by row."""
    right = total = 0
    at = 0
    for row in sel:
        idx = row.nonzero().flatten().tolist()
        start = 0
        for i in range(1, len(idx) + 1):
            if i == len(idx) or idx[i] != idx[i - 1] + 1:  # an answer ends where the labels break
                right += bool(hits[at + start : at + i].all())
                total += 1
                start = i
        at += len(idx)
    return right, total
