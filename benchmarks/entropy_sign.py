"""Which sign of the entropy term pushes a student towards one class? (docs/method.md §4)

A controlled two-class problem with medguna's own stage-2 loss and optimiser: frozen, normalised
512-d features of two Gaussian classes; a teacher adapter whose boundary puts `teacher0` of the
images in class 0; a student adapter that starts as the teacher and trains 5 epochs of batch 50 on
500 images (the reference's budget for a Shenzhen-sized set). Prints, per entropy_weight, the
student's largest predicted class share and its accuracy, means over 5 seeds.

    python benchmarks/entropy_sign.py            # about 1 minute on one core
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from medguna.method.losses import stage2_loss
from medguna.method.stage2 import make_stage2_optimizer

DIM, IMAGES, EPOCHS, BATCH = 512, 500, 5, 50


def _problem(seed: int, truth0: float, teacher0: float):
    g = torch.Generator().manual_seed(seed)
    axis = F.normalize(torch.randn(DIM, generator=g), dim=0)  # separates the classes
    common = F.normalize(torch.randn(DIM, generator=g), dim=0)  # shared by all (as CLIP features are)
    labels = (torch.arange(IMAGES) >= int(truth0 * IMAGES)).long()
    sign = labels.float() * 2 - 1
    feats = F.normalize(torch.randn(IMAGES, DIM, generator=g) * 0.04 + sign[:, None] * axis * 0.05
                        + common * 0.5, dim=1)
    # Teacher: scores +-20 along the axis, shifted through the common direction so that a share
    # teacher0 of the images falls in class 0.
    weight = torch.stack([-axis, axis]) * 20.0
    shift = torch.quantile(feats @ axis, teacher0)
    weight[0] += common * (shift * 40.0) / (feats @ common).mean()
    return g, feats, labels, weight


def run(entropy_weight: float, lr: float, seed: int, truth0: float, teacher0: float) -> tuple[float, float]:
    g, feats, labels, weight = _problem(seed, truth0, teacher0)
    teacher = (feats @ weight.T).argmax(dim=1)
    student = torch.nn.Linear(DIM, 2, bias=False)
    with torch.no_grad():
        student.weight.copy_(weight)
    optimizer = make_stage2_optimizer(list(student.parameters()), name="sgd", lr=lr, weight_decay=0.01)
    for _ in range(EPOCHS):
        order = torch.randperm(IMAGES, generator=g)
        for start in range(0, IMAGES - BATCH + 1, BATCH):
            idx = order[start:start + BATCH]
            views = F.normalize(feats[idx] + torch.randn(BATCH, DIM, generator=g) * 0.01, dim=1)
            loss, _ = stage2_loss(student(views), teacher[idx], ce_weight=0.7, entropy_weight=entropy_weight,
                                  confident_ratio=0.1, label_smoothing=0.1, safe_entropy=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predicted = student(feats).argmax(dim=1)
    share = max(float((predicted == k).float().mean()) for k in (0, 1))
    return share, float((predicted == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for lr in (5e-4, 0.5):
        for truth0, teacher0 in ((0.5, 0.7), (0.7, 0.7), (0.7, 0.5)):
            for entropy_weight in (1.5, 0.0, -1.5):
                runs = torch.tensor([run(entropy_weight, lr, s, truth0, teacher0) for s in range(args.seeds)])
                share, accuracy = runs.mean(dim=0).tolist()
                print(f"lr {lr:g}  true class-0 share {truth0}  teacher's {teacher0}  entropy_weight "
                      f"{entropy_weight:+.1f}: largest class share {share:.3f}, accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
