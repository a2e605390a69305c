"""A PyTorch script: a custom Module, TensorDataset + random_split + DataLoader, Adam, StepLR,
clip_grad_norm_, an eval loop under no_grad, accuracy by (pred == y).sum().item() / y.size(0).
Only the import line differs between PyTorch and fastnn (tests/test_ported_scripts.py)."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

torch.manual_seed(0)
rng = np.random.default_rng(0)
centers = rng.normal(size=(4, 16)) * 2.0
labels = rng.integers(0, 4, size=1200)
features = centers[labels] + rng.normal(size=(1200, 16))
X = torch.tensor(features, dtype=torch.float32)
y = torch.tensor(labels, dtype=torch.long)

dataset = TensorDataset(X, y)
train_set, val_set = random_split(dataset, [1000, 200],
                                  generator=torch.Generator().manual_seed(42))
train_loader = DataLoader(train_set, batch_size=32, shuffle=True)
val_loader = DataLoader(val_set, batch_size=64, shuffle=False)


class Net(nn.Module):
    def __init__(self, d_in, hidden, classes):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.fc1(x)))
        return self.fc2(self.drop(x))


device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
model = Net(16, 64, 4).to(device)
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)

for _epoch in range(4):
    model.train()
    running = 0.0
    for xb, yb in train_loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0)
        optimizer.step()
        running += loss.item() * xb.size(0)
    scheduler.step()

model.eval()
correct, total = 0, 0
with torch.no_grad():
    for xb, yb in val_loader:
        pred = model(xb).argmax(dim=1)
        correct += (pred == yb).sum().item()
        total += yb.size(0)
accuracy = correct / total
print(f"accuracy {accuracy:.4f}")
