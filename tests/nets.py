"""Small networks worked out by hand, shared by the LRP and registry tests."""
import torch
from torch import nn


def two_layer():
    """x = [1, 2] -> W1 (3x2) -> ReLU -> W2 (1x3): z1 = [-1, 2, 3], h = [0, 2, 3], f = 0.5."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 3, bias=False), nn.ReLU(),
                        nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0], [3.0, -0.5], [1.0, 1.0]]))
        net[3].weight.copy_(torch.tensor([[1.0, 1.0, -0.5]]))
    x = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)
    return net, x
