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
