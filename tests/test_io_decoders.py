"""Wan VAE and TAE decoders: streaming equals whole decode, frame counts, official key names, loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longlive_rtc.model.checkpoint import CheckpointError
from longlive_rtc.model.decode import StreamingDecoder, frames_for_latents, to_uint8_frames
from longlive_rtc.model.tae import TAEConfig, TAEDecoder, load_tae
from longlive_rtc.model.vae import (
    AttentionBlock,
    CausalConv3d,
    Resample,
    ResidualBlock,
    RMSNorm,
    VAEConfig,
    WanVAEDecoder,
    load_wan_vae,
)
from longlive_rtc.model.weights import ModelConfigs, load_decoder

H, W = 4, 6  # latent size; pixels are 8x


def latents(frames: int = 12, channels: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, frames, channels, H, W, generator=torch.Generator().manual_seed(seed))


def randomize(model: torch.nn.Module, std: float) -> torch.nn.Module:
    """Random weights (norm gains around 1) so that every layer matters in the comparisons."""
    gen = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        p.data = torch.randn(p.shape, generator=gen) * std + (1.0 if name.endswith("gamma") else 0.0)
    return model.eval()


@pytest.fixture(scope="module")
def vae() -> WanVAEDecoder:
    return randomize(WanVAEDecoder(VAEConfig.tiny()), 0.3)


@pytest.fixture(scope="module")
def tae() -> TAEDecoder:
    return randomize(TAEDecoder(TAEConfig.tiny()), 0.2)


@pytest.mark.parametrize("which", ["vae", "tae"])
def test_streaming_four_blocks_equals_whole_decode(which, request):
    model = request.getfixturevalue(which)
    z = latents(12)
    with torch.no_grad():
        whole = model(z, model.new_state())
    stream = StreamingDecoder(model)
    blocks = [stream.decode_float(z[:, i : i + 3]) for i in range(0, 12, 3)]
    assert [b.shape[1] for b in blocks] == [9, 12, 12, 12]
    assert whole.shape == (1, 45, 3, 8 * H, 8 * W)
    torch.testing.assert_close(torch.cat(blocks, dim=1), whole, rtol=0, atol=1e-5)
    assert whole.std() > 0.05  # not a constant image: the comparison means something
    assert stream.frames_emitted == 45 == frames_for_latents(12, stream_start=True)


def test_vae_one_latent_per_pass_matches_block_passes(vae):
    """The official code feeds one latent per decoder pass; the result must not depend on it."""
    z = latents(6, seed=3)
    per_latent = StreamingDecoder(vae, frame_chunk=1)
    per_block = StreamingDecoder(vae)
    a = torch.cat([per_latent.decode_float(z[:, :3]), per_latent.decode_float(z[:, 3:])], dim=1)
    b = torch.cat([per_block.decode_float(z[:, :3]), per_block.decode_float(z[:, 3:])], dim=1)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("frame_chunk", [None, 1])
def test_vae_channels_last_layout_gives_the_same_frames(vae, frame_chunk):
    """`optimize(channels_last=True)` runs NDHWC activations end to end; the pixels must not change."""
    import copy

    z = latents(9, seed=5)
    fast = copy.deepcopy(vae).optimize(channels_last=True)
    assert fast.decoder.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    plain_stream, fast_stream = StreamingDecoder(vae, frame_chunk), StreamingDecoder(fast, frame_chunk)
    for block in (z[:, :3], z[:, 3:6], z[:, 6:]):
        want, got = plain_stream.decode_float(block), fast_stream.decode_float(block)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    tails = fast_stream.state.tails.values()  # every conv's input history: the layout held all the way
    assert all(t.is_contiguous(memory_format=torch.channels_last_3d) and not t.is_contiguous() for t in tails)


def reference_decode(vae: WanVAEDecoder, x: torch.Tensor) -> torch.Tensor:
    """The decoder over a whole stream at once, written plainly: zeros before the first frame of every causal
    conv, each conv with its bias, nearest upsampling; the time upsamplers skip the stream's first frame."""

    def conv(c: CausalConv3d, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x.new_zeros(*x.shape[:2], c.time_pad, *x.shape[3:]), x], 2)
        return F.conv3d(x, c.weight, c.bias, padding=c.padding)

    def norm_silu(n: RMSNorm, x: torch.Tensor) -> torch.Tensor:
        return F.silu(F.normalize(x, dim=1) * n.scale * n.gamma)

    def layer(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(m, AttentionBlock):
            return m(x)
        if isinstance(m, ResidualBlock):
            n1, _, c1, n2, _, _, c2 = m.residual
            h = x if isinstance(m.shortcut, torch.nn.Identity) else conv(m.shortcut, x)
            return conv(c2, norm_silu(n2, conv(c1, norm_silu(n1, x)))) + h
        assert isinstance(m, Resample)
        if m.time_conv is not None:
            y = conv(m.time_conv, x[:, :, 1:])
            b, c2, t, h, w = y.shape
            y = y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)
            x = torch.cat([x[:, :, :1], y], 2)
        b, c, t, h, w = x.shape
        frames = F.interpolate(x.transpose(1, 2).reshape(b * t, c, h, w), scale_factor=2.0, mode="nearest")
        frames = F.conv2d(frames, m.resample[1].weight, m.resample[1].bias, padding=1)
        return frames.reshape(b, t, -1, 2 * h, 2 * w).transpose(1, 2)

    dec = vae.decoder
    x = conv(dec.conv1, x)
    for m in (*dec.middle, *dec.upsamples):
        x = layer(m, x)
    return conv(dec.head[2], norm_silu(dec.head[0], x))


@pytest.mark.parametrize("optimised", [False, True])
def test_streaming_decoder_equals_a_plain_whole_stream_reference(vae, optimised):
    """Block by block (channels-last and compiled too), the decoder computes what the plain formulation does."""
    import copy

    from longlive_rtc.model.compile import compile_vae

    model = compile_vae(copy.deepcopy(vae).optimize(), backend="aot_eager") if optimised else vae
    x = torch.randn(1, 16, 7, H, W, generator=torch.Generator().manual_seed(6))  # after conv2: 1 + 3 + 3 latents
    with torch.no_grad():
        want = reference_decode(vae, x)
        state = model.new_state()
        layout = torch.channels_last_3d if optimised else torch.contiguous_format
        got = torch.cat([model.decoder(x[:, :, a:b].contiguous(memory_format=layout), state)
                         for a, b in ((0, 1), (1, 4), (4, 7))], 2)  # fmt: skip
    assert want.shape == (1, 3, 25, 8 * H, 8 * W) and want.std() > 0.05
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * float(want.abs().max()))  # float32 sums in other orders


def test_reset_starts_a_new_stream(vae):
    stream = StreamingDecoder(vae)
    z = latents(3)
    first = stream.decode_float(z)
    assert stream.decode_float(z).shape[1] == 12
    stream.reset()
    again = stream.decode_float(z)
    assert again.shape[1] == 9
    torch.testing.assert_close(again, first, rtol=0, atol=0)


def test_first_frame_depends_only_on_first_latent(vae):
    """Causality: later latents never change earlier frames."""
    z = latents(6)
    z2 = z.clone()
    z2[:, 3:] = torch.randn_like(z2[:, 3:])
    a = StreamingDecoder(vae).decode_float(z)
    b = StreamingDecoder(vae).decode_float(z2)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=0)
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_uint8_frames_layout_and_rounding():
    video = torch.tensor([0.0, 0.5, 1.0, 1.2, -0.1, 0.999]).view(1, 2, 3, 1, 1)
    frames = to_uint8_frames(video)
    assert frames.dtype == torch.uint8 and frames.shape == (1, 2, 1, 1, 3)
    assert frames.flatten().tolist() == [0, 127, 255, 255, 0, 254]  # x255, truncated


def test_decode_returns_uint8_hwc(tae):
    frames = StreamingDecoder(tae).decode(latents(3))
    assert frames.shape == (1, 9, 8 * H, 8 * W, 3) and frames.dtype == torch.uint8


def test_full_size_vae_has_official_names_and_shapes():
    with torch.device("meta"):
        state = WanVAEDecoder().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert len(shapes) == 108
    assert shapes["conv2.weight"] == (16, 16, 1, 1, 1)
    assert shapes["decoder.conv1.weight"] == (384, 16, 3, 3, 3)
    assert shapes["decoder.middle.0.residual.0.gamma"] == (384, 1, 1, 1)
    assert shapes["decoder.middle.1.norm.gamma"] == (384, 1, 1)
    assert shapes["decoder.middle.1.to_qkv.weight"] == (1152, 384, 1, 1)
    assert shapes["decoder.upsamples.3.time_conv.weight"] == (768, 384, 3, 1, 1)
    assert shapes["decoder.upsamples.3.resample.1.weight"] == (192, 384, 3, 3)
    assert shapes["decoder.upsamples.4.shortcut.weight"] == (384, 192, 1, 1, 1)
    assert shapes["decoder.upsamples.7.time_conv.weight"] == (768, 384, 3, 1, 1)
    assert "decoder.upsamples.11.time_conv.weight" not in shapes  # the last upsampler is 2D only
    assert shapes["decoder.upsamples.11.resample.1.weight"] == (96, 192, 3, 3)
    assert shapes["decoder.upsamples.14.residual.6.weight"] == (96, 96, 3, 3, 3)
    assert shapes["decoder.head.2.weight"] == (3, 96, 3, 3, 3)


def test_full_size_tae_has_official_names_and_shapes():
    with torch.device("meta"):
        state = TAEDecoder().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert len(shapes) == 64
    assert shapes["decoder.1.weight"] == (256, 16, 3, 3)
    assert shapes["decoder.3.conv.0.weight"] == (256, 512, 3, 3)
    assert shapes["decoder.7.conv.weight"] == (256, 256, 1, 1)  # no time growth in the first stage
    assert shapes["decoder.13.conv.weight"] == (256, 128, 1, 1)
    assert shapes["decoder.19.conv.weight"] == (128, 64, 1, 1)
    assert shapes["decoder.22.weight"] == (3, 64, 3, 3)


def test_vae_file_loads_with_encoder_keys_skipped(tmp_path, vae):
    state = dict(vae.state_dict())
    state["encoder.conv1.weight"] = torch.zeros(4, 3, 3, 3, 3)
    state["conv1.weight"] = torch.zeros(32, 32, 1, 1, 1)
    torch.save(state, tmp_path / "Wan2.1_VAE.pth")
    configs = ModelConfigs(vae=VAEConfig.tiny())
    stream = load_decoder("wan", tmp_path / "Wan2.1_VAE.pth", device="cpu", dtype=torch.float32, configs=configs)
    z = latents(3)
    torch.testing.assert_close(stream.decode_float(z), StreamingDecoder(vae).decode_float(z), rtol=0, atol=0)
    assert stream.kind == "wan"


def test_vae_file_with_missing_or_unknown_keys_fails(tmp_path, vae):
    state = dict(vae.state_dict())
    state.pop("decoder.head.2.bias")
    state["decoder.tail.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): decoder.head.2.bias.*decoder.tail.weight"):
        load_wan_vae(tmp_path / "bad.pth", cfg=VAEConfig.tiny())


def test_tae_file_loads_and_fits_wider_tgrow(tmp_path, tae):
    state = dict(tae.state_dict())
    state["encoder.0.weight"] = torch.zeros(8, 3, 3, 3)
    kept = state["decoder.7.conv.weight"]  # stage without time growth: the file may hold 2 frames' channels
    state["decoder.7.conv.weight"] = torch.cat([torch.zeros_like(kept), kept])
    torch.save(state, tmp_path / "taew2_1.pth")
    loaded = load_tae(tmp_path / "taew2_1.pth", cfg=TAEConfig.tiny())
    assert torch.equal(loaded.state_dict()["decoder.7.conv.weight"], kept)
    z = latents(3)
    torch.testing.assert_close(StreamingDecoder(loaded).decode_float(z), StreamingDecoder(tae).decode_float(z))
    del state["decoder.22.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="decoder.22.bias"):
        load_tae(tmp_path / "bad.pth", cfg=TAEConfig.tiny())


def test_unknown_decoder_kind(tmp_path):
    with pytest.raises(ValueError, match="wan"):
        load_decoder("fast", tmp_path / "x.pth")  # type: ignore[arg-type]
