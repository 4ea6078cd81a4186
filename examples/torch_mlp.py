"""Your own PyTorch training loop, with pruning: `ctx.report` after every epoch.

A small MLP on the bundled digits (no download). `ctx.report(epoch, accuracy)` feeds the
pruner and the per-trial energy cap; when it returns True the loop stops and returns its
best accuracy so far (the trial is recorded PRUNED, with the energy it spent).
"""

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25,
                                                  stratify=y, random_state=0)
X_train, X_val = (torch.tensor(a, dtype=torch.float32) for a in (X_train, X_val))
y_train, y_val = (torch.tensor(a) for a in (y_train, y_val))
EPOCHS = 10  # = [objective] steps in torch.toml


def objective(params: dict, ctx) -> float:
    torch.manual_seed(ctx.seed)
    device = torch.device(ctx.device)
    model = nn.Sequential(nn.Linear(64, params["hidden"]), nn.ReLU(),
                          nn.Linear(params["hidden"], 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    xt, yt, xv, yv = (t.to(device) for t in (X_train, y_train, X_val, y_val))
    best = 0.0
    for epoch in range(EPOCHS):
        model.train()
        for i in range(0, len(xt), params["batch_size"]):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i:i + params["batch_size"]]),
                                        yt[i:i + params["batch_size"]]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(xv).argmax(1) == yv).float().mean().item()
        best = max(best, accuracy)
        if ctx.report(epoch, accuracy):  # the pruner or the energy cap says stop
            break
    return best
