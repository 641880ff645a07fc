"""The backbones (nonvae/autoencoders/): each built from its own model section through the registry,
one forward per step, the conv/MLP plain autoencoder with LTAE's transform, the split (E1, E2, G) one."""

from __future__ import annotations

import pytest
import torch

from nonvae.autoencoders import ConvModel, MLPModel, PlainAutoencoder, SplitAutoencoder, SplitModel, build_backbone
from nonvae.config import load_config

from .conftest import REPO


@pytest.mark.parametrize("cfg, latent", [
    (ConvModel(width=4, latent_width=2, latent_channels=3), (3, 2, 2)),
    (ConvModel(width=4, latent_width=4, latent_channels=2, transform="minmax"), (2, 4, 4)),
    (MLPModel(hidden=[8], latent_dim=5), (5,)),
    (MLPModel(hidden=[8], latent_dim=5, transform="standardize"), (5,)),
    (SplitModel(width=4, latent_width=2, content_dim=3, attribute_dim=1), (4, 2, 2)),
])
def test_each_backbone_builds_from_its_section_and_decodes_extra_codes_in_one_forward(cfg, latent):
    torch.manual_seed(0)
    ae = build_backbone(cfg, (1, 16, 16))
    assert type(ae) is (SplitAutoencoder if cfg.backbone == "split" else PlainAutoencoder)
    assert ae.latent_shape == latent and ae.image_shape == (1, 16, 16)
    assert (ae.transform is not None) == (getattr(cfg, "transform", "none") != "none")
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    extra = lambda z: z.flip(0)  # noqa: E731  (what a regularizer's extra codes look like)
    out = ae.eval()(x, torch.ones(4), extra)
    assert out["z"].shape == (4, *latent) and out["recon"].shape == x.shape and out["extra"].shape == x.shape
    assert torch.allclose(out["extra"], ae.decode(out["z"].flip(0)), atol=1e-5)  # eval: no decoder noise
    assert torch.equal(ae.encode(x, torch.ones(4)), out["z"])


def widths(encoder) -> list[int]:
    return [m.out_channels for m in encoder.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]


def test_press_architecture_matches_the_official_widths():
    cfg = load_config(f"{REPO}/configs/celeba/disentangle.yaml").model
    ae = SplitAutoencoder(cfg, (3, 128, 128))
    assert widths(ae.content_encoder) == [32, 64, 128, 256, 487, 487]
    assert widths(ae.attribute_encoder) == [32, 64, 128, 128, 128, 25]
    assert cfg.attribute_code == "global" and ae.attribute_encoder.vector(torch.zeros(1, 3, 128, 128)).shape == (1, 25)
    assert cfg.attribute_pool == "linear" and ae.attribute_encoder.pool.weight.shape == (25, 25 * 2 * 2)
    assert widths(ae.decoder) == [512, 256, 128, 64, 32, 3]
    assert ae.latent_shape == (512, 2, 2) and isinstance(ae.decoder.net[-1], torch.nn.Tanh)
    convs = [m for m in ae.content_encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in ae.content_encoder.modules()) == 6
    # levels follow image size / latent width; the interface is the same as the ACAI-style backbone
    small = SplitAutoencoder(SplitModel(arch="press", width=4, latent_width=2, content_dim=6,
                                        attribute_dim=2, norm="instance", out_activation="tanh"), (1, 16, 16))
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    content, attribute = small.encode_parts(x, torch.tensor([1.0, 0.0, 1.0]))
    assert content.shape == (3, 6, 2, 2) and attribute.shape == (3, 2, 2, 2) and (attribute[1] == 0).all()
    out = small(x, torch.ones(3))
    assert out["recon"].shape == x.shape and out["z"].shape == (3, 8, 2, 2)


def test_global_attribute_code():
    """attribute_code=global: E2 carries attribute_dim numbers per image, zero vector = zero map."""
    cfg = SplitModel(width=4, latent_width=4, content_dim=4, attribute_dim=2, attribute_code="global")
    ae = SplitAutoencoder(cfg, (1, 16, 16))
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    content, attribute = ae.encode_parts(x, torch.tensor([1.0, 0.0, 1.0]))
    assert content.shape == (3, 4, 4, 4) and attribute.shape == (3, 2, 4, 4) and (attribute[1] == 0).all()
    v = ae.attribute_encoder.vector(x)
    assert v.shape == (3, 2)
    # the grid code is a linear function of the vector: at most 2 degrees of freedom per image
    w = ae.attribute_encoder.spread.weight  # (2 * 16, 2)
    assert torch.allclose(attribute[0].flatten(), w @ v[0], atol=1e-5)
    assert (ae.attribute_encoder.spread(torch.zeros(1, 2)) == 0).all()
    press = SplitAutoencoder(SplitModel(arch="press", width=4, latent_width=2, content_dim=6,
                                        attribute_dim=3, norm="instance", out_activation="tanh",
                                        attribute_code="global"), (1, 16, 16))
    out = press(x, torch.ones(3))
    assert out["z"].shape == (3, 9, 2, 2) and out["recon"].shape == x.shape


def test_linear_attribute_pool_sees_where_the_attribute_is():
    """attribute_pool=linear maps the flattened E2 grid to the vector: still attribute_dim numbers, a zero
    vector still a zero map, but no longer blind to position (mean pooling gives a mirrored input's vector
    whenever E2's grid output is mirrored)."""
    cfg = SplitModel(width=4, latent_width=4, content_dim=4, attribute_dim=2, attribute_code="global",
                     attribute_pool="linear")
    ae = SplitAutoencoder(cfg, (1, 16, 16))
    enc = ae.attribute_encoder
    assert enc.pool is not None and enc.pool.weight.shape == (2, 2 * 16) and enc.pool.bias is None
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    v = enc.vector(x)
    assert v.shape == (3, 2) and torch.allclose(v, enc.pool(enc.encoder(x).flatten(1)))
    grid = enc.encoder(x)
    mean = SplitAutoencoder(SplitModel(width=4, latent_width=4, content_dim=4, attribute_dim=2,
                                       attribute_code="global"), (1, 16, 16)).attribute_encoder
    assert mean.pool is None
    # the same grid moved to another place: mean pooling cannot tell, the linear pool can
    moved = grid.roll(2, dims=-1)
    assert torch.allclose(moved.mean((2, 3)), grid.mean((2, 3)), atol=1e-6)
    assert not torch.allclose(enc.pool(moved.flatten(1)), enc.pool(grid.flatten(1)), atol=1e-4)
    assert (enc.spread(torch.zeros(1, 2)) == 0).all()


def test_mlp_attribute_spread_is_nonlinear_but_keeps_zero_and_dim():
    """attribute_spread=mlp: the grid is a non-linear function of the same attribute_dim numbers (not W v for any
    W), and a zero vector (domain B) is still a zero map."""
    cfg = SplitModel(width=4, latent_width=4, content_dim=4, attribute_dim=2, attribute_code="global",
                     attribute_pool="linear", attribute_spread="mlp")
    ae = SplitAutoencoder(cfg, (1, 16, 16))
    enc = ae.attribute_encoder
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    content, attribute = ae.encode_parts(x, torch.tensor([1.0, 0.0, 1.0]))
    assert attribute.shape == (3, 2, 4, 4) and (attribute[1] == 0).all()
    assert (enc.spread(torch.zeros(1, 2)) == 0).all()
    v = torch.tensor([[1.0, -1.0]])
    # a linear map would give spread(-v) = -spread(v); the leaky ReLU between the layers does not
    assert not torch.allclose(enc.spread(-v), -enc.spread(v), atol=1e-4)
    assert torch.allclose(enc.spread(2 * v), 2 * enc.spread(v), atol=1e-5)  # still positively homogeneous
    assert all(m.bias is None for m in enc.spread if isinstance(m, torch.nn.Linear))
    out = ae(x, torch.ones(3))
    out["recon"].sum().backward()
    assert all(p.grad is not None for p in enc.spread.parameters())
    # a spatial E2 has nothing to spread: the key is refused, not ignored
    from nonvae.errors import ConfigError
    with pytest.raises(ConfigError, match="model.attribute_spread"):
        SplitAutoencoder(SplitModel(width=4, latent_width=4, content_dim=4, attribute_dim=2,
                                    attribute_spread="mlp"), (1, 16, 16))


@pytest.mark.parametrize("size,grid", [(32, 4), (28, 7), (48, 6), (16, 4), (7, 7)])
def test_image_critic_fits_any_image_size(size, grid):
    """The image critic halves the image while the side stays even and >= 4, then gives two logits per image."""
    from nonvae.nets import ImageCritic

    critic = ImageCritic(3, size, 4)
    assert critic.encoder(torch.zeros(2, 3, size, size)).shape[-2:] == (grid, grid)
    assert critic(torch.rand(2, 3, size, size)).shape == (2, 2)


def test_coord_channels_only_where_the_decoder_has_them(tmp_path, capsys):
    """model.coord_channels widens every conv of the acai decoder by two inputs; with the press decoder, which
    has none, it is a config error naming the key (not silently ignored)."""
    from nonvae.cli import main
    from nonvae.errors import ConfigError

    plain = SplitAutoencoder(SplitModel(width=4, latent_width=4, content_dim=4, attribute_dim=2), (1, 16, 16))
    coords = SplitAutoencoder(SplitModel(width=4, latent_width=4, content_dim=4, attribute_dim=2,
                                         coord_channels=True), (1, 16, 16))
    first = [m for m in coords.decoder.modules() if isinstance(m, torch.nn.Conv2d)][0]
    assert first.in_channels == 6 + 2
    x = torch.rand(2, 1, 16, 16)
    assert coords(x)["recon"].shape == plain(x)["recon"].shape == (2, 1, 16, 16)
    with pytest.raises(ConfigError, match="model.coord_channels"):
        SplitAutoencoder(SplitModel(arch="press", width=4, latent_width=2, content_dim=6, coord_channels=True),
                         (3, 16, 16))
    assert main(["train", "attributes/disentangle", "--run-dir", str(tmp_path / "run"), "--set", "data.base=digits",
                 "--set", "model.arch=press", "--set", "model.coord_channels=true"]) == 2
    err = capsys.readouterr().err
    assert "model.coord_channels" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_attribute_film_lets_the_attribute_code_reach_every_decoder_layer(tmp_path, capsys):
    """model.attribute_film: the global attribute code scales and shifts every hidden conv of the acai decoder.
    Its maps start at zero (the decoder is the plain one at init), a zero code never changes anything (a removal
    stays a removal), a non-zero one changes the output through every modulated layer, and it is a config error
    where there is no global code or no acai decoder."""
    from nonvae.errors import ConfigError

    torch.manual_seed(0)
    cfg = dict(width=4, latent_width=4, content_dim=4, attribute_dim=2, attribute_code="global",
               attribute_pool="linear")
    film = SplitAutoencoder(SplitModel(**cfg, attribute_film=True), (1, 16, 16))
    dec = film.decoder
    convs = [m for m in dec.net if isinstance(m, torch.nn.Conv2d)]
    assert len(dec.film) == len(convs) - 1  # every conv but the output one
    z = torch.randn(3, 6, 4, 4)
    assert torch.equal(dec(z), dec.net(z))  # zero-initialised maps: the plain decoder
    for m in dec.film:
        torch.nn.init.normal_(m.weight, 0.0, 0.5)
    removal = z.clone()
    removal[:, 4:] = 0
    assert torch.allclose(dec(removal), dec.net(removal), atol=1e-6)  # a zero attribute code modulates nothing
    assert not torch.allclose(dec(z), dec.net(z), atol=1e-3)
    x = torch.rand(2, 1, 16, 16)
    film(x)["recon"].pow(2).mean().backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in dec.film)
    for bad in (dict(cfg, attribute_code="spatial"), dict(cfg, arch="press", latent_width=2, content_dim=6)):
        with pytest.raises(ConfigError, match="model.attribute_film"):
            SplitAutoencoder(SplitModel(**bad, attribute_film=True), (1, 16, 16))
    from nonvae.cli import main  # through the CLI: one line naming the key, no run directory written

    assert main(["train", "attributes/disentangle", "--run-dir", str(tmp_path / "run"), "--set", "data.base=digits",
                 "--set", "model.attribute_code=spatial", "--set", "model.attribute_film=true"]) == 2
    err = capsys.readouterr().err
    assert "model.attribute_film" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_attribute_render_draws_the_attribute_code_at_full_resolution(tmp_path, capsys):
    """model.attribute_render: a coordinate renderer turns the global attribute code into a full-resolution map
    that joins the decoder's last two convs. A zero code (a removal, a domain-B image) draws nothing, so the
    decoder output then depends on the content channels alone; a non-zero code changes the output through it; the
    renderer's edges are straight lines the code places (one unit alone is a half-plane); it trains; and it is a
    config error where there is no global code or no acai decoder."""
    from nonvae.errors import ConfigError
    from nonvae.nets import AttributeRenderer

    torch.manual_seed(0)
    cfg = dict(width=4, latent_width=4, content_dim=4, attribute_dim=2, attribute_code="global",
               attribute_pool="linear")
    model = SplitAutoencoder(SplitModel(**cfg, attribute_render=8), (1, 16, 16))
    dec = model.decoder
    last_two = [m for m in dec.net if isinstance(m, torch.nn.Conv2d)][-2:]
    assert last_two[0].in_channels == 4 + 2  # width + the renderer's attribute-dim channels
    z = torch.randn(3, 6, 4, 4)
    code = z[:, 4:].flatten(1)
    assert dec.renderer(code, (16, 16)).shape == (3, 2, 16, 16)
    with torch.no_grad():
        assert float(dec.renderer(torch.zeros_like(code), (16, 16)).abs().max()) == 0.0
    removal = z.clone()
    removal[:, 4:] = 0
    with torch.no_grad():
        removed = dec(removal)
        dec.renderer.mix[-1].weight.zero_()  # the map says nothing: only the grid's attribute channels are left
        silent = dec(z)
        torch.nn.init.normal_(dec.renderer.mix[-1].weight, 0.0, 1.0)
        assert not torch.allclose(dec(z), silent, atol=1e-4)  # the map reaches the output ...
        assert torch.equal(dec(removal), removed)  # ... but not where the code is zero, whatever its weights
    # one unit on its own: p x + q y + r > 0 is a half-plane whose edge the code sets
    one = AttributeRenderer(1, 1, 1)
    with torch.no_grad():
        one.edges.weight.copy_(torch.tensor([[1.0], [0.0], [0.0]]))  # p = c, q = r = 0: the edge x = 0
        one.mix[1].weight.fill_(1.0)
        one.mix[3].weight.fill_(1.0)
        img = one(torch.ones(1, 1), (8, 8))[0, 0]
    assert bool((img[:, 4:] > 0.1).all()) and bool((img[:, :4].abs() < 0.1).all())
    x = torch.rand(2, 1, 16, 16)
    model(x, torch.tensor([1, 1]))["recon"].pow(2).mean().backward()
    assert dec.renderer.edges.weight.grad is not None and dec.renderer.edges.weight.grad.abs().sum() > 0
    for bad in (dict(cfg, attribute_code="spatial"), dict(cfg, arch="press", latent_width=2, content_dim=6)):
        with pytest.raises(ConfigError, match="model.attribute_render"):
            SplitAutoencoder(SplitModel(**bad, attribute_render=8), (1, 16, 16))
    from nonvae.cli import main

    assert main(["train", "attributes/disentangle", "--run-dir", str(tmp_path / "run"), "--set", "data.base=digits",
                 "--set", "model.attribute_code=spatial", "--set", "model.attribute_render=16"]) == 2
    err = capsys.readouterr().err
    assert "model.attribute_render" in err and "Traceback" not in err


def test_attribute_pool_mlp_is_a_non_linear_map_that_keeps_zero_at_zero():
    """model.attribute_pool: mlp maps E2's flattened grid to the vector through a bias-free hidden layer: a zero grid
    gives a zero vector (a domain-B image's E2 can be exactly zero), and, unlike the linear pool, the vector of a sum
    of grids is not the sum of their vectors; the model trains through it."""
    from nonvae.autoencoders.split import GlobalAttribute

    torch.manual_seed(0)
    grid = torch.nn.Identity()  # the pool alone: the "encoder" hands over the grid as it is
    pools = {kind: GlobalAttribute(grid, 2, (4, 4), pool=kind) for kind in ("linear", "mlp")}
    g1, g2 = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    for kind, pool in pools.items():
        with torch.no_grad():
            assert float(pool.vector(torch.zeros(1, 2, 4, 4)).abs().max()) == 0.0
            additive = torch.allclose(pool.vector(g1 + g2), pool.vector(g1) + pool.vector(g2), atol=1e-5)
        assert additive == (kind == "linear"), kind
    model = SplitAutoencoder(SplitModel(width=4, latent_width=4, content_dim=4, attribute_dim=2,
                                        attribute_code="global", attribute_pool="mlp"), (1, 16, 16))
    model(torch.rand(2, 1, 16, 16), torch.tensor([1, 0]))["recon"].pow(2).mean().backward()
    assert model.attribute_encoder.pool[0].weight.grad.abs().sum() > 0
