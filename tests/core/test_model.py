import pytest
import torch

from napari_sparseseg.core.config import ModelConfig, TrainConfig, pools_for_spacing, preset
from napari_sparseseg.core.model import UNet3D, count_parameters

PAPER_PARAMETERS = 19_069_955  # Çiçek et al. 2016, 1 input channel, 3 classes


def test_paper_preset_matches_published_parameter_count():
    n = count_parameters(UNet3D(preset("paper").model, n_classes=3))
    assert abs(n - PAPER_PARAMETERS) / PAPER_PARAMETERS < 1e-3


def test_paper_preset_architecture():
    net = UNet3D(preset("paper").model, n_classes=3)
    widths = [(b[0].in_channels, b[0].out_channels, b[3].out_channels) for b in net.encoders]
    assert widths == [(1, 32, 64), (64, 64, 128), (128, 128, 256), (256, 256, 512)]
    assert isinstance(net.encoders[0][1], torch.nn.BatchNorm3d)
    assert [d.up.out_channels for d in net.decoders] == [512, 256, 128]


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
@pytest.mark.parametrize("shape", [(8, 16, 16), (5, 13, 11), (1, 7, 9)])
def test_forward_keeps_odd_shapes(norm, shape):
    config = ModelConfig(features=(4, 8, 16), norm=norm, pools=((1, 2, 2), (2, 2, 2)))
    net = UNet3D(config, n_classes=3).eval()
    out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, 3, *shape)


def test_anisotropic_pooling_layers():
    config = ModelConfig(features=(4, 8, 16), pools=((1, 2, 2), (2, 2, 2)))
    net = UNet3D(config, n_classes=2)
    assert net.pool_layers[0].kernel_size == (1, 2, 2)
    assert net.decoders[-1].up.stride == (1, 2, 2)
    assert config.total_pool == (2, 4, 4)


@pytest.mark.parametrize("shape", [(8, 16, 16), (5, 13, 11)])
def test_residual_blocks_and_strided_down_steps(shape):
    config = ModelConfig(features=(4, 8, 16), pools=((1, 2, 2), (2, 2, 2)), blocks="residual",
                         downsample="strided")
    net = UNet3D(config, n_classes=3).eval()
    assert net(torch.randn(2, 1, *shape)).shape == (2, 3, *shape)
    assert isinstance(net.encoders[0].skip, torch.nn.Conv3d)  # 1 -> 4 channels: a projection
    assert isinstance(net.decoders[0].conv.skip, torch.nn.Conv3d)
    assert net.pool_layers[0].stride == (1, 2, 2) and net.pool_layers[0].weight.requires_grad
    same = UNet3D(ModelConfig(features=(4, 4), blocks="residual"), n_classes=2)
    assert isinstance(same.encoders[1].skip, torch.nn.Identity)
    with pytest.raises(ValueError, match="blocks"):
        ModelConfig(blocks="dense")
    with pytest.raises(ValueError, match="downsample"):
        ModelConfig(downsample="average")


def test_deep_supervision_scores_every_decoder_level_in_training_only():
    config = ModelConfig(features=(4, 8, 16), pools=((1, 2, 2), (2, 2, 2)), filters=(1.0,), trees=0,
                         pointwise=8, deep_supervision=True)
    net = UNet3D(config, n_classes=3)
    x = torch.randn(1, net.stem.out_channels, 6, 13, 11)
    main, deeper = net.from_features(x, deep=True)
    assert main.shape == deeper.shape == (1, 3, 6, 13, 11)
    assert torch.equal(main, deeper)  # both heads start at zero: the first stage's answer
    assert torch.equal(net.from_features(x), main)
    assert len(UNet3D(ModelConfig(features=(4, 8, 16, 32), deep_supervision=True), 2).aux_heads) == 2
    assert not UNet3D(ModelConfig(features=(4, 8, 16)), 2).aux_heads


def test_pools_follow_spacing():
    assert pools_for_spacing((4.0, 1.0, 1.0), 3) == ((1, 2, 2), (1, 2, 2), (2, 2, 2))
    assert pools_for_spacing((1.0, 1.0, 1.0), 2) == ((2, 2, 2), (2, 2, 2))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(norm="layer")
    with pytest.raises(ValueError, match="pools"):
        ModelConfig(features=(4, 8, 16), pools=((2, 2, 2),))
    with pytest.raises(ValueError, match="preset"):
        preset("huge")
    with pytest.raises(ValueError, match="intensity_augment"):
        TrainConfig(intensity_augment=1.5)
