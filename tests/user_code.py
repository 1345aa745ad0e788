"""User code the tests write into their temporary directories, as a PyTorch user would have it."""

# The network of pytorch/examples' mnist/main.py (conv, conv, max-pool, dropout, two linear
# layers, log_softmax), for 8x8 inputs: fc1 takes 64 x 2 x 2 features instead of 64 x 12 x 12.
MNIST_NET = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(256, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output
'''

# Small learnable 8x8 images: a smooth template per class, scaled, plus noise.
IMAGES = '''
import torch


def make(size=600, seed=3):
    g = torch.Generator().manual_seed(seed)
    templates = torch.nn.functional.interpolate(torch.randn(10, 1, 3, 3, generator=g), size=(8, 8), mode="bilinear")
    y = torch.randint(0, 10, (size,), generator=g)
    x = templates[y] * (0.5 + torch.rand(size, 1, 1, 1, generator=g)) + 0.8 * torch.randn(size, 1, 8, 8, generator=g)
    return x * 16 + 40, y
'''
