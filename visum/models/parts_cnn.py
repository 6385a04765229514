"""A small CNN for the synthetic parts benchmark (:mod:`visum.data.parts`), and its loader.

The network is deliberately small (five 3x3 conv-BN-ReLU blocks, ~0.1 M parameters,
~60 M multiply-adds per 128x128 image) so that a whole ``visum run`` on the benchmark fits
in a couple of minutes on two CPU cores. Its committed weights
(``visum/models/weights/parts-cnn.pt``) are a ``state_dict`` written by
:func:`visum.models.train_parts.train_parts_cnn`; the metrics of that run sit next to them
in ``parts-cnn.json``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
from torch import nn

from visum.data.parts import CLASS_NAMES
from visum.errors import ConfigError
from visum.models.base import LoadedModel, Preprocessing

INPUT_SIZE = 128
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
WIDTHS = (16, 32, 48, 64, 64)
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "parts-cnn.pt"

GRAD_CAM_LAYER = "features.15"  # name of PartsCNN.last_conv in named_modules()
PREPROCESSING = Preprocessing(
    input_size=INPUT_SIZE, resize_to=INPUT_SIZE, mean=MEAN, std=STD, source="parts benchmark CNN (128 px, no crop)"
)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class PartsCNN(nn.Module):
    """Conv trunk ``features`` then global average pooling and a linear ``classifier``.

    ``features``: 128 → (conv, pool) 64 → (conv, pool) 32 → (conv, pool) 16 → conv → conv,
    i.e. a ``[B, 64, 16, 16]`` map; its last ``nn.Conv2d`` (``features[15]``, also
    :attr:`last_conv`) is the usual Grad-CAM layer. Receptive field of the last layer: 54 px.
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES), widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        w1, w2, w3, w4, w5 = widths
        self.features = nn.Sequential(
            *_block(3, w1), nn.MaxPool2d(2),
            *_block(w1, w2), nn.MaxPool2d(2),
            *_block(w2, w3), nn.MaxPool2d(2),
            *_block(w3, w4),
            *_block(w4, w5),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(w5, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def last_conv(self) -> nn.Conv2d:
        return [m for m in self.features if isinstance(m, nn.Conv2d)][-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def widths_of_state(state: dict) -> tuple[int, ...]:
    """The conv widths of a :class:`PartsCNN` ``state_dict`` (out channels of its 4-d ``features.*`` weights).

    Falls back to :data:`WIDTHS` when ``state`` does not hold five such weights, so a
    foreign file still fails in ``load_state_dict`` with its own message.
    """
    convs = sorted(
        ((int(k.split(".")[1]), v) for k, v in state.items()
         if k.startswith("features.") and k.endswith(".weight") and k.count(".") == 2
         and k.split(".")[1].isdigit() and getattr(v, "ndim", 0) == 4),
        key=lambda kv: kv[0],
    )
    return tuple(int(v.shape[0]) for _, v in convs) if len(convs) == len(WIDTHS) else WIDTHS


def load_parts_model(weights: str | Path | None = None, device="cpu") -> LoadedModel:
    """The parts-benchmark CNN with its weights (default: the committed ones), in eval mode.

    The conv widths follow the file (:func:`widths_of_state`), so narrower models trained
    with ``train_parts_cnn(widths=...)`` load too.

    ``fingerprint`` is the SHA-256 of the weight file's bytes. Raises
    :class:`visum.errors.ConfigError` naming the file if it is missing or not a valid
    ``state_dict`` of :class:`PartsCNN`.
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        hint = " (retrain with `python -m visum.models.train_parts --out PATH`)" if weights is None else ""
        raise ConfigError(f"parts model: weight file {path} does not exist{hint}") from None
    except OSError as e:
        raise ConfigError(f"parts model: cannot read weight file {path}: {e}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"expected a state_dict, found {type(state).__name__}")
        model = PartsCNN(widths=widths_of_state(state))  # the shipped file: WIDTHS
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 — any failure here means a bad file
        raise ConfigError(f"parts model: weight file {path} is not a valid PartsCNN state_dict ({e})") from None
    model.eval().to(device)
    return LoadedModel(
        module=model,
        spec="parts",
        preprocessing=PREPROCESSING,
        class_names=list(CLASS_NAMES),
        fingerprint=hashlib.sha256(data).hexdigest(),
        extras={"weights": str(path), "grad_cam_layer": GRAD_CAM_LAYER},
    )
