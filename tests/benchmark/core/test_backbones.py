"""Backbones load from a local diffusers directory and behave like the models they wrap."""

import pytest
import torch

from benchmark.core.backbones import BackboneConfig, build_backbone
from benchmark.core.backbones.base import TimeGrid
from benchmark.core.backbones.flux import FluxCond
from benchmark.core.backbones.sd3 import SD3Cond
from benchmark.core.backbones.tiny import POOLED_DIM, TEXT_DIM, tiny_flux, tiny_sd3
from benchmark.core.errors import ConfigError


def save(backbone, root):
    backbone.transformer.save_pretrained(root / "transformer")
    backbone.vae.save_pretrained(root / "vae")
    backbone.scheduler.save_pretrained(root / "scheduler")


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_load_from_local_diffusers_directory(tmp_path, name):
    original = (tiny_flux if name == "flux" else tiny_sd3)(height=32, width=32)
    save(original, tmp_path)
    loaded = build_backbone(BackboneConfig(name=name, path=str(tmp_path), height=32, width=32, dtype="float32"))
    g = torch.Generator().manual_seed(0)
    if name == "flux":
        cond = FluxCond(torch.randn(1, 5, TEXT_DIM, generator=g), torch.randn(1, POOLED_DIM, generator=g))
    else:
        cond = SD3Cond(*(torch.randn(1, 5, TEXT_DIM, generator=g) if i % 2 == 0 else torch.randn(1, POOLED_DIM, generator=g) for i in range(4)))
    x = original.noise(1, g)
    sigma = original.schedule(8)[3]
    assert torch.equal(loaded.schedule(8), original.schedule(8))
    # from_pretrained memory-maps the safetensors; BLAS may take other kernels on those weights, so the
    # velocities agree to float32 rounding (seen: 4e-7 of a max |v| ~ 2), not bit for bit
    v_loaded, v_original = loaded.velocity(x, sigma, cond), original.velocity(x, sigma, cond)
    assert ((v_loaded - v_original).abs().max() / v_original.abs().max()).item() < 1e-6
    assert torch.allclose(loaded.decode(x), original.decode(x), rtol=0, atol=1e-6)


def test_flux_pack_unpack_roundtrip_and_decode_range():
    backbone = tiny_flux(height=48, width=32)
    z = torch.randn(2, backbone.channels, backbone.latent_h, backbone.latent_w)
    assert torch.equal(backbone.unpack(backbone.pack(z)), z)
    images = backbone.decode(backbone.pack(z))
    assert images.shape == (2, 3, 48, 32) and images.min() >= 0 and images.max() <= 1


def test_flux_decode_is_differentiable():
    backbone = tiny_flux()
    x = backbone.noise(1, torch.Generator().manual_seed(0)).requires_grad_()
    backbone.decode(x).mean().backward()
    assert x.grad.abs().sum() > 0


def test_flux_guidance_reaches_the_transformer():
    backbone = tiny_flux()
    cond = FluxCond(torch.randn(1, 5, TEXT_DIM), torch.randn(1, POOLED_DIM))
    x, sigma = backbone.noise(1, torch.Generator().manual_seed(0)), torch.tensor(0.5)
    v_35 = backbone.velocity(x, sigma, cond)
    backbone.guidance = 1.0
    assert not torch.allclose(v_35, backbone.velocity(x, sigma, cond))


def test_time_grid_static_shift_and_quantised_model_time():
    """DanceGRPO's grid (fastvideo/train_grpo_flux.py): sd3_time_shift(3, linspace(1, 0, T + 1)) in float32, the
    model told int(1000 sigma) / 1000; the default grid is the backbone's own schedule and its sigma."""
    backbone = tiny_flux(height=32, width=32)
    assert TimeGrid().model(backbone) is backbone and torch.equal(TimeGrid().sigmas(backbone, 4), backbone.schedule(4))
    grid = TimeGrid(shift=3.0, levels=1000)
    t = torch.linspace(1, 0, 17)
    sigmas = grid.sigmas(backbone, 16)
    assert sigmas.dtype == torch.float32 and torch.equal(sigmas, (3.0 * t) / (1 + 2.0 * t))
    assert [int(s * 1000) for s in sigmas][:4] == [1000, 978, 954, 928]
    told = []
    model = grid.model(type("Spy", (), {"velocity": lambda self, x, s, c: told.append(s) or x, "name": "spy"})())
    model.velocity(torch.zeros(1), sigmas[1], None)
    assert told[0].item() == torch.tensor(978, dtype=torch.long).div(1000).item() and model.name == "spy"
    with pytest.raises(ConfigError, match="schedule.num_steps"):
        grid.sigmas(backbone, 1)
