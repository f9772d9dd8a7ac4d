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


def skip_net(c1=1.5, c2=-0.5):
    """torchvision BasicBlock on one channel at 1x1 (3x3 convs act by their centre weight)."""
    from torchvision.models.resnet import BasicBlock

    blk = BasicBlock(1, 1)
    with torch.no_grad():
        for conv, c in ((blk.conv1, c1), (blk.conv2, c2)):
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = c
        for bn in (blk.bn1, blk.bn2):
            bn.running_mean.zero_()
            bn.running_var.fill_(1 - bn.eps)
    net = nn.Sequential(blk, nn.Flatten(), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[2].weight.fill_(1.0)
    return net.eval(), torch.full((1, 1, 1, 1), 2.0)


def smooth_images(n, h=12, w=12, seed=0):
    """``n`` float64 images ``(3, h, w)``: seeded noise smoothed by a 5 x 5 mean (neighbouring
    pixels correlate, as a PDA patch model needs), shared by the PDA approximation tests."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, h + 4, w + 4, generator=g, dtype=torch.float64)
    return nn.functional.avg_pool2d(x, 5, 1) * 2.0


class LeftHalfNet(nn.Module):
    """Non-linear in the left five columns, blind to the rest of the image (windows elsewhere
    have no effect: what the PDA approximation check must notice)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
        self.fc = nn.Linear(4, 3).double()

    def forward(self, x):
        return 4 * self.fc(torch.tanh(self.conv(x[..., :5])).mean((2, 3)))


class BoundNet(nn.Module):
    """Two classes from two hidden ReLU units per pixel, h0 = relu(R + 0.1) and
    h1 = relu(G - R + 0.1): class 1 needs G above R (the FGVis defence tests, Wagner et al. 2019,
    Table 1: an image without it can only be pushed to class 1 by an adversarial mask)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 1.0, 0]]).view(2, 3, 1, 1))
            self.conv.bias.fill_(0.1)
            self.fc.weight.copy_(torch.tensor([[8.0, 0.0], [0.0, 8.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
