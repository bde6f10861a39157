"""Pre-train the demo's toy flow on ``benchmark.core.toy_data`` by flow matching, and save it.

Rectified flow: x_sigma = (1 - sigma) x_0 + sigma x_1 with x_1 ~ N(0, I), and v_theta(x_sigma, sigma)
regresses the velocity x_1 - x_0 (the engine integrates from sigma = 1 down to 0 with these v).
``python -m benchmark.cli.demo.pretrain --out DIR`` writes the small checkpoint bundled with the package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import trange

from benchmark.core.backbones.toy import ToyBackbone, ToyConfig
from benchmark.core.toy_data import sample_data

BUNDLED = Path(__file__).with_name("base_toy")
TOY = ToyConfig(dim=2, hidden=128, depth=3, cond_dim=0, time_features=16, shift=1.0)


def pretrain(steps: int = 3000, batch: int = 1024, lr: float = 2e-3, seed: int = 0, progress: bool = True) -> ToyBackbone:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    backbone = ToyBackbone(TOY)
    net = backbone.transformer
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in trange(steps, desc="pre-training the toy flow", disable=not progress):
        x_0, x_1 = sample_data(batch, g), torch.randn(batch, 2, generator=g)
        sigma = torch.rand(batch, generator=g)
        x_sigma = (1 - sigma[:, None]) * x_0 + sigma[:, None] * x_1
        loss = (net(x_sigma, sigma, None) - (x_1 - x_0)).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    return backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUNDLED)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pretrain(args.steps, seed=args.seed).save_pretrained(args.out)
    print(f"saved the pre-trained toy flow to {args.out}")


if __name__ == "__main__":
    main()
