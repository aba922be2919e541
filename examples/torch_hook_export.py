"""Export a PyTorch sequential recommender through a forward hook, for ``recsae import``
(docs/import.md, recipe "a PyTorch model").

The model here stands for yours: a GRU over the item history whose output layer is
``nn.Linear(d, n_items)``, so score(h, i) = h · W_i + b_i — an item embedding (W's row) and an
item bias (docs/import.md, the score). A forward hook on the GRU collects the hidden state after
every prefix of every history: the representation at each position n = 1 .. n_u - 1 (a
sequential import). The script makes its own small data (seeded), trains a few epochs, and
writes the import directory with the model's own top 10 (the history masked) for 100 users.

    python examples/torch_hook_export.py --out /tmp/gru-import
    recsae import /tmp/gru-import --name gru
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn


class GRURec(nn.Module):
    def __init__(self, n_items: int, d: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_items, d)
        self.gru = nn.GRU(d, d, batch_first=True)
        self.out = nn.Linear(d, n_items)  # weight [n_items, d]: item embeddings; bias [n_items]

    def forward(self, seq_BL: torch.Tensor) -> torch.Tensor:
        hidden_BLD, _ = self.gru(self.emb(seq_BL))
        return self.out(hidden_BLD)  # [B, L, n_items] the next item's scores at every position


def make_data(n_users: int, n_items: int, length: int, seed: int) -> pd.DataFrame:
    """Users walk through item 'neighbourhoods' (so there is something to learn)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = rng.integers(n_items)
        steps = rng.integers(1, 4, size=length)
        items = list(dict.fromkeys(int(x) for x in (start + np.cumsum(steps)) % n_items))
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


def export_gru(out: Path, n_users: int = 200, n_items: int = 60, d: int = 16, length: int = 12,
               epochs: int = 4, seed: int = 0) -> None:  # fmt: skip
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    frame = make_data(n_users, n_items, length, seed)
    item_ids = [f"i{i}" for i in range(n_items)]
    users = sorted(frame["user"].unique())
    seqs = [
        frame[frame["user"] == u]["item"].map(lambda s: int(s[1:])).to_numpy(copy=True)
        for u in users
    ]
    model = GRURec(n_items, d)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):  # next-item cross-entropy on the training part (all but dev, test)
        for seq in seqs:
            train = torch.as_tensor(seq[:-2])[None]
            logits = model(train[:, :-1])[0]
            loss = nn.functional.cross_entropy(logits, train[0, 1:])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    captured: list[torch.Tensor] = []
    hook = model.gru.register_forward_hook(lambda m, i, o: captured.append(o[0].detach()))
    rows, reps, top = [], [], []
    with torch.no_grad():
        for user, seq in zip(users, seqs, strict=True):
            captured.clear()
            scores = model(torch.as_tensor(seq[:-1])[None])[0]  # history = train + dev items
            hidden = captured[0][0]  # [len - 1, d]: after 1, 2, ..., len - 1 items
            for n in range(1, len(seq)):
                rows.append((user, n))
                reps.append(hidden[n - 1].numpy())
            last = scores[-1].clone()
            last[torch.as_tensor(seq[:-1])] = -torch.inf  # the history is not recommended
            order = np.argsort(-last.numpy().astype(np.float64), kind="stable")[:10]
            top += [(user, r + 1, item_ids[i]) for r, i in enumerate(order)]
    hook.remove()

    np.save(out / "items.npy", model.out.weight.detach().numpy())
    np.save(out / "item_bias.npy", model.out.bias.detach().numpy())
    pd.DataFrame({"item": item_ids}).to_csv(out / "item_ids.csv", index=False)
    np.save(out / "users.npy", np.stack(reps))
    pd.DataFrame(rows, columns=["user", "position"]).to_csv(out / "cases.csv", index=False)
    frame.to_csv(out / "interactions.csv", index=False)
    ranked = pd.DataFrame(top, columns=["user", "rank", "item"])
    ranked[ranked["user"].isin(users[:100])].to_csv(out / "ranking.csv", index=False)
    meta = pd.DataFrame({"item": item_ids, "title": [f"Item {i}" for i in range(n_items)],
                         "tags": [f"zone{i * 6 // n_items}" for i in range(n_items)]})  # fmt: skip
    meta.to_csv(out / "items.csv", index=False)
    manifest = {
        "description": f"a GRU ({d} units) trained in PyTorch, exported by a forward hook",
        "score": "dot+bias",
        "sequential": True,
        "items": {"embeddings": "items.npy", "ids": "item_ids.csv", "bias": "item_bias.npy"},
        "users": {"representations": "users.npy", "ids": "cases.csv"},
        "interactions": "interactions.csv",
        "item_metadata": "items.csv",
        "ranking": "ranking.csv",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    export_gru(args.out, seed=args.seed)
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
