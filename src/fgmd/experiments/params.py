"""Parameter accounting across model and training parts, and the paper's ~22M claim.

Lives here, above ``models`` and ``training``, because it counts both (the DAMD attention
modules and the class projection exist only while training).
"""

from __future__ import annotations

import math

from fgmd.config import Config

#: The FG-MD README's parameter claim ("only ~22M parameters"); no breakdown is published.
PAPER_PARAMS = 22_000_000


def parameter_counts(config: Config, num_classes: int) -> tuple[int, int]:
    """(inference parameters of both branches, training-only parameters: class projection + DAMD)."""
    from fgmd.models import count_parameters, model_from_config
    from fgmd.training.objective import FGMDObjective

    model = model_from_config(config, load_pretrained=False)
    objective = FGMDObjective(config.loss, config.model.bits, num_classes, model.level_channels)
    return count_parameters(model), count_parameters(objective)


def paper_parameter_comparison(config: Config, num_classes: int = 6) -> dict[str, int]:
    """Counts of this design at width 1.0 and of candidate explanations of the paper's ~22M.

    Nothing here changes the model: these are counts of alternative architectures, so that
    ``fgmd info`` can say how far each is from 22M. ``config``'s bits, modules, head width
    and band counts are kept; the width is set to 1.0 (the paper's MobileNetV2).

    Returns:
        ``paper``: 22M; ``ours``: our two branches at inference; ``train_only``: class
        projection + DAMD attention (with DAMD on); ``torchvision_mobilenet_v2_x2``: two
        complete torchvision MobileNetV2 ImageNet classifiers (1000-class layer included);
        ``head_hidden_for_paper``: the hash-head hidden width that would bring our two
        branches to 22M; ``head_hidden_2048``: our two branches with hidden width 2048;
        ``resnet50_trunk``: one torchvision ResNet-50 without its fc layer.
    """
    from torchvision.models import mobilenet_v2, resnet50

    from fgmd.models import count_parameters

    full = config.with_overrides(
        ["model.width_mult=1.0", "model.pretrained=none", "model.pretrained_path=", "loss.damd=true"]
    )
    ours, train_only = parameter_counts(full, num_classes)
    wide = full.with_overrides(["model.head_hidden=2048"])
    wide_total, _ = parameter_counts(wide, num_classes)
    # One hash head of hidden width h: 1280h + 2h (BN) + h^2 + 2h (BN) + hK + K (hidden linears have no bias).
    # Both heads change with h: solve 2·head(h) + rest = 22M for h.
    c_in, k, h0 = 1280, full.model.bits, full.model.head_hidden
    head = lambda h: c_in * h + 4 * h + h * h + h * k + k  # noqa: E731
    rest = ours - 2 * head(h0)
    b, c = c_in + 4 + k, k - (PAPER_PARAMS - rest) / 2
    hidden = (-b + math.sqrt(b * b - 4 * c)) / 2
    resnet = resnet50(weights=None)
    return {
        "paper": PAPER_PARAMS,
        "ours": ours,
        "train_only": train_only,
        "torchvision_mobilenet_v2_x2": 2 * count_parameters(mobilenet_v2(weights=None)),
        "head_hidden_for_paper": int(round(hidden)),
        "head_hidden_2048": wide_total,
        "resnet50_trunk": count_parameters(resnet) - count_parameters(resnet.fc),
    }


__all__ = ["PAPER_PARAMS", "paper_parameter_comparison", "parameter_counts"]
