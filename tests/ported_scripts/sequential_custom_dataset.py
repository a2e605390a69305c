"""A PyTorch script: a custom Dataset with __getitem__ returning (features, label) NumPy
rows, a DataLoader with two workers, nn.Sequential, SGD with momentum, CosineAnnealingLR,
nn.init, a train/eval split by Subset, accuracy with .float().mean()."""
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

torch.manual_seed(1)


class Moons(Dataset):
    def __init__(self, n, seed):
        r = np.random.default_rng(seed)
        t = r.uniform(0, np.pi, n)
        lab = r.integers(0, 2, n)
        x = np.stack([np.cos(t) + lab, np.sin(t) * (1 - 2 * lab) + 0.5 * lab], 1)
        self.x = (x + r.normal(scale=0.1, size=x.shape)).astype(np.float32)
        self.y = lab.astype(np.int64)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


data = Moons(800, seed=3)
order = np.random.default_rng(0).permutation(len(data))
train_loader = DataLoader(Subset(data, order[:600].tolist()), batch_size=50, shuffle=True,
                          num_workers=2)
val_loader = DataLoader(Subset(data, order[600:].tolist()), batch_size=100)

model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                      nn.Linear(32, 2))


def init_weights(m):
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)


model.apply(init_weights)
loss_fn = nn.CrossEntropyLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=15)

for _epoch in range(15):
    model.train()
    for xb, yb in train_loader:
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()
    sched.step()

model.eval()
hits = []
with torch.no_grad():
    for xb, yb in val_loader:
        hits.append((model(xb).argmax(1) == yb).float().mean().item() * yb.size(0))
accuracy = sum(hits) / 200
print(f"accuracy {accuracy:.4f}")
