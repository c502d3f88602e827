"""CycleGAN networks: the ResNet generator, the PatchGAN discriminator and the image pool.

Re-implemented from the description of TLlib's ``tllib/translation/cyclegan`` (itself the
original CycleGAN code) in reference/domain_adaptation.md section 4:

- ``ResnetGenerator``: reflect-pad 3 + 7x7 conv stem, two stride-2 downsamplings (ngf -> 2ngf ->
  4ngf), ``n_blocks`` residual blocks at 4ngf, two stride-2 transposed convolutions back to ngf,
  reflect-pad 3 + 7x7 conv to 3 channels + tanh. Images in and out are in [-1, 1]; H and W must
  be multiples of 4 (output size = input size). ``ngf=64, n_blocks=9`` is ``resnet_9``
  (11,378,179 parameters with instance norm).
- ``PatchDiscriminator``: the 70x70 PatchGAN (``n_layers=3``): a logit per image patch, no
  sigmoid (the LSGAN loss reads raw scores). 256 px in -> 30 x 30 out.
- ``ImagePool``: the history buffer of generated images the discriminators are trained on
  (Shrivastava et al.), so they do not only chase the generator's latest output.

Instance norm (affine-free, no running statistics) is the default: train and eval then behave
identically, which keeps a generator used as a data transform deterministic.
"""
from __future__ import annotations

import random

import torch
from torch import Tensor, nn

NORMS = ("instance", "batch")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    raise ValueError(f"CycleGAN norm must be one of {NORMS}; got {kind!r}")


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """CycleGAN's 'normal' init: conv/linear weights ~ N(0, gain), biases 0; BN weight ~ N(1, gain)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class ResidualBlock(nn.Module):
    """x + (reflect-pad, conv3x3, norm, ReLU, [dropout], reflect-pad, conv3x3, norm)(x)."""

    def __init__(self, channels: int, norm: str, use_bias: bool, dropout: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=use_bias),
                                   norm_layer(norm, channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=use_bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image-to-image generator (see the module docstring); [-1, 1] in and out."""

    DOWNSAMPLINGS = 2  # fixed by the architecture: H and W must divide by 2**2

    def __init__(self, ngf: int = 64, n_blocks: int = 9, norm: str = "instance", dropout: bool = False,
                 in_channels: int = 3, out_channels: int = 3, init_gain: float = 0.02):
        super().__init__()
        if ngf <= 0 or n_blocks < 0:
            raise ValueError(f"ResnetGenerator: need ngf > 0 and n_blocks >= 0; got ngf={ngf}, n_blocks={n_blocks}")
        use_bias = norm == "instance"  # a conv followed by an affine BN needs no bias of its own
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=use_bias),
                                   norm_layer(norm, ngf), nn.ReLU(True)]
        width = ngf
        for _ in range(self.DOWNSAMPLINGS):
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=use_bias),
                       norm_layer(norm, 2 * width), nn.ReLU(True)]
            width *= 2
        layers += [ResidualBlock(width, norm, use_bias, dropout) for _ in range(n_blocks)]
        for _ in range(self.DOWNSAMPLINGS):
            layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=use_bias),
                       norm_layer(norm, width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self, init_gain)

    @property
    def size_multiple(self) -> int:
        return 2 ** self.DOWNSAMPLINGS

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % self.size_multiple or x.shape[-2] % self.size_multiple:
            raise ValueError(f"ResnetGenerator: image height and width must be multiples of {self.size_multiple}; "
                             f"got {tuple(x.shape[-2:])} (pad first, see sim2real.translate_images)")
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: (B, 3, H, W) in [-1, 1] -> (B, 1, h, w) patch logits (no sigmoid)."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, norm: str = "instance", in_channels: int = 3,
                 init_gain: float = 0.02):
        super().__init__()
        if ndf <= 0 or n_layers < 1:
            raise ValueError(f"PatchDiscriminator: need ndf > 0 and n_layers >= 1; got ndf={ndf}, n_layers={n_layers}")
        use_bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            # the last of these keeps the resolution (stride 1): it widens the receptive field to 70 px
            stride, out = (2 if n < n_layers else 1), ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=use_bias),
                       norm_layer(norm, out), nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        init_weights(self, init_gain)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class ImagePool:
    """History of up to ``size`` generated images (detached).

    ``query(images)``: while the pool fills, each image is stored and returned; once full, each
    image is, with probability 1/2, swapped for a random stored one (which is returned in its
    place), else returned as is. ``size`` 0 returns the batch unchanged. Own seeded RNG, so runs
    repeat; the pool itself is not checkpointed (a resumed run refills it, as the original does).
    """

    def __init__(self, size: int = 50, seed: int = 0):
        if size < 0:
            raise ValueError(f"ImagePool: size must be >= 0; got {size}")
        self.size = size
        self.images: list[Tensor] = []
        self._rng = random.Random(seed)

    def query(self, images: Tensor) -> Tensor:
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self._rng.random() > 0.5:
                slot = self._rng.randrange(self.size)
                out.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                out.append(image)
        return torch.cat(out, 0)
