"""The seeds' own training loops, re-created line by line: the reference side of every benchmark case.

A torchvision dataset with ``Compose([ToTensor(), Normalize(...)])`` (per-sample
PIL) behind ``DataLoader(shuffle=True)``, the seed's update rule (seed 000's
Python ``SGD_Optimizer`` with its momentum dict keyed by ``id(param)``;
``torch.optim.SGD`` for seeds 001/002), and its per-step ``.item()`` calls for
loss and accuracy. ``tests/test_bench.py`` checks these against the seeds'
numbers and deeplab's models.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = [
    "SeedTwoLayerNet",
    "SeedFiveLayerCNN",
    "SeedFiveLayerCNNSigmoid",
    "seed000_train_steps",
    "seed001_train_steps",
    "seed002_train_steps",
    "seed_mnist_loader",
    "seed_cifar10_loader",
    "MNIST_SEED000_MEAN_STD",
    "MNIST_SEED002_MEAN_STD",
    "CIFAR_SEED001_MEAN_STD",
]

MNIST_SEED000_MEAN_STD = ((0.5,), (0.5,))  # seed 000's Normalize (Fashion-MNIST, [-1, 1])
MNIST_SEED002_MEAN_STD = ((0.1307,), (0.3081,))  # seed 002's Normalize
CIFAR_SEED001_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


# =============================================================================
# Seed 000's models, verbatim: the update rule and the loss are methods of the net
# =============================================================================
class SeedTwoLayerNet(nn.Module):
    """Seed 000 Part 1's ``TwoLayerNet``, as the notebook writes it (784→256 sigmoid →10)."""

    def sigmoid(self, x):
        return 1 / (1 + torch.exp(-x))

    def softmax(self, x):
        exp_x = torch.exp(x - x.max(dim=1, keepdim=True)[0])  # Subtract max for stability
        return exp_x / exp_x.sum(dim=1, keepdim=True)

    def cross_entropy_loss(self, outputs, labels):
        one_hot_labels = torch.zeros_like(outputs)
        one_hot_labels.scatter_(1, labels.view(-1, 1), 1)
        log_probs = torch.log(self.softmax(outputs) + 1e-10)
        loss = -torch.sum(one_hot_labels * log_probs) / outputs.size(0)
        return loss

    def SGD_Optimizer(self, params, lr):  # noqa: N802  (the seed's name)
        with torch.no_grad():
            for param in params:
                if param.grad is not None:
                    param.data = param.data - lr * param.grad
                    param.grad = None  # Reset gradient

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = self.sigmoid(self.fc1(x))
        x = self.fc2(x)
        return x


class SeedFiveLayerCNN(nn.Module):
    """Seed 000 Part 2's ``FiveLayerCNN`` with its momentum ``SGD_Optimizer`` (equation 8), verbatim."""

    def leaky_relu(self, x, negative_slope=0.1):
        return torch.maximum(x, negative_slope * x)

    def tanh(self, x):
        return torch.tanh(x)

    def softmax(self, x):
        exp_x = torch.exp(x - x.max(dim=1, keepdim=True)[0])
        return exp_x / exp_x.sum(dim=1, keepdim=True)

    def cross_entropy_loss(self, outputs, labels):
        one_hot_labels = torch.zeros_like(outputs)
        one_hot_labels.scatter_(1, labels.view(-1, 1), 1)
        log_probs = torch.log(self.softmax(outputs) + 1e-10)
        loss = -torch.sum(one_hot_labels * log_probs) / outputs.size(0)
        return loss

    def SGD_Optimizer(self, params, lr, momentum=0.0):  # noqa: N802  (the seed's name)
        """m_{i+1} = α·m_i + g_i; θ_{i+1} = θ_i − η·m_{i+1} (seed 000, equation 8)."""
        if not hasattr(self, "momentum_buffer"):
            self.momentum_buffer = {}
        with torch.no_grad():
            for param in params:
                if param.grad is not None:
                    param_id = id(param)
                    if param_id not in self.momentum_buffer:
                        self.momentum_buffer[param_id] = torch.zeros_like(param.data)
                    grad = param.grad
                    self.momentum_buffer[param_id] = momentum * self.momentum_buffer[param_id] + grad
                    param.data = param.data - lr * self.momentum_buffer[param_id]
                    param.grad = None

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 3 * 3, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool(self.leaky_relu(self.conv1(x)))  # [batch, 16, 14, 14]
        x = self.pool(self.leaky_relu(self.conv2(x)))  # [batch, 32, 7, 7]
        x = self.pool(self.leaky_relu(self.conv3(x)))  # [batch, 64, 3, 3]
        x = x.view(x.size(0), -1)  # [batch, 576]
        x = self.tanh(self.fc1(x))  # [batch, 256]
        x = self.fc2(x)  # [batch, 10] logits
        return x


class SeedFiveLayerCNNSigmoid(nn.Module):
    """Seed 000's ``FiveLayerCNN_Sigmoid`` (Missing Experiment 1, batch 1), verbatim: sigmoid everywhere,
    plain SGD as a method of the net."""

    def sigmoid(self, x):
        return 1 / (1 + torch.exp(-x))

    def softmax(self, x):
        exp_x = torch.exp(x - x.max(dim=1, keepdim=True)[0])
        return exp_x / exp_x.sum(dim=1, keepdim=True)

    def cross_entropy_loss(self, outputs, labels):
        one_hot_labels = torch.zeros_like(outputs)
        one_hot_labels.scatter_(1, labels.view(-1, 1), 1)
        log_probs = torch.log(self.softmax(outputs) + 1e-10)
        loss = -torch.sum(one_hot_labels * log_probs) / outputs.size(0)
        return loss

    def SGD_Optimizer(self, params, lr):  # noqa: N802  (the seed's name)
        with torch.no_grad():
            for param in params:
                if param.grad is not None:
                    param.data = param.data - lr * param.grad
                    param.grad = None

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 3 * 3, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.sigmoid(self.conv1(x))
        x = self.pool(x)
        x = self.sigmoid(self.conv2(x))
        x = self.pool(x)
        x = self.sigmoid(self.conv3(x))
        x = self.pool(x)
        x = x.view(x.size(0), -1)
        x = self.sigmoid(self.fc1(x))
        x = self.fc2(x)
        return x


# =============================================================================
# The seeds' training loops, verbatim per step, stopping after ``steps`` batches
# =============================================================================
def seed000_train_steps(model, train_loader, steps, device, learning_rate, momentum=None):
    """Seed 000's loop (Part 1 / Part 2 Step 6) for ``steps`` batches; returns the images seen.

    ``momentum=None`` calls ``SGD_Optimizer(params, lr)`` (Part 1's signature),
    otherwise ``SGD_Optimizer(params, lr, momentum=α)`` (Step 6).
    """
    model.train()
    total_loss = 0
    correct_train = 0
    total_train = 0
    for step, (images, labels) in enumerate(train_loader):
        if step == steps:
            break
        images, labels = images.to(device), labels.to(device)
        for param in model.parameters():
            param.grad = None
        outputs = model(images)
        loss = model.cross_entropy_loss(outputs, labels)
        total_loss += loss.item()
        _, predicted = torch.max(outputs.data, 1)
        total_train += labels.size(0)
        correct_train += (predicted == labels).sum().item()
        loss.backward()
        if momentum is None:
            model.SGD_Optimizer(model.parameters(), learning_rate)
        else:
            model.SGD_Optimizer(model.parameters(), learning_rate, momentum=momentum)
    return total_train


def seed002_train_steps(model, criterion, optimizer, loader, steps, device):
    """Seed 002's ``train_epoch`` for ``steps`` batches; returns the images seen."""
    model.train()
    total_correct = 0.0
    total_samples = 0.0
    for batch_idx, (data, target) in enumerate(loader):
        if batch_idx == steps:
            break
        data, target = data.to(device), target.to(device)
        output = model(data)
        loss = criterion(output, target)
        _, pred = torch.max(output.data, 1)
        total_correct += (pred == target).sum().item()
        total_samples += target.size(0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return int(total_samples)


def seed001_train_steps(model, criterion, optimizer, train_loader, steps, device, progress_file=None):
    """Seed 001's ``train_model`` inner loop (tqdm bar with per-step ``set_postfix``) for ``steps`` batches."""
    from tqdm import tqdm

    model.train()
    running_loss = 0.0
    correct = 0
    total = 0
    pbar = tqdm(train_loader, desc="Epoch 1/20", file=progress_file)
    try:
        for step, (inputs, labels) in enumerate(pbar):
            if step == steps:
                break
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            _, predicted = outputs.max(1)
            total += labels.size(0)
            correct += predicted.eq(labels).sum().item()
            pbar.set_postfix({"loss": running_loss / (pbar.n + 1), "acc": 100.0 * correct / total})
    finally:
        pbar.close()
    return total


# =============================================================================
# The seeds' data paths: torchvision dataset + per-sample transform + DataLoader
# =============================================================================
def seed_mnist_loader(data_dir, batch_size, mean_std=MNIST_SEED002_MEAN_STD, num_workers=0):
    """``datasets.MNIST(transform=Compose([ToTensor(), Normalize(...)]))`` in ``DataLoader(shuffle=True)``."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*mean_std)])
    dataset = datasets.MNIST(str(data_dir), train=True, download=False, transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)


def seed_cifar10_loader(data_dir, batch_size=128, num_workers=2):
    """Seed 001's training loader: RandomCrop(32, 4) + flip + ToTensor + Normalize, ``num_workers=2``."""
    from torchvision import transforms

    transform_train = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(*CIFAR_SEED001_MEAN_STD),
    ])
    from deeplab.data.datamodules import CheckedCIFAR10  # the same md5 handling as deeplab's own CIFAR-10

    dataset = CheckedCIFAR10(str(data_dir), train=True, download=False, transform=transform_train)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)
