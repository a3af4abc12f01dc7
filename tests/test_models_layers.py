"""Models built from the new layers, end to end against torch: a cascade face detector's
P-Net and R-Net (Conv2d, per-channel PReLU, MaxPool2d(ceil_mode=True), a channels-last
flatten, Linear, Softmax over the channels of a 4-D map) and the small ResNet of
``fastnn train resnet`` (BasicBlock with BatchNorm2d, residual add, global average pool),
loaded from torch state dicts; and the ``train resnet`` command."""
import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.models import BasicBlock, ResNet
from fnn_testing import assert_close, to_torch


# ------------------------------------------------------------------ face detector (MTCNN-style)
class PNet(nn.Module):
    """Proposal net: fully convolutional; box regression and a face probability map."""

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3, dtype=dtype), nn.PReLU(10, dtype=dtype)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3, dtype=dtype), nn.PReLU(16, dtype=dtype)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3, dtype=dtype), nn.PReLU(32, dtype=dtype)
        self.conv4_1, self.softmax4_1 = nn.Conv2d(32, 2, 1, dtype=dtype), nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, 1, dtype=dtype)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(self._input(x))))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))

    def backward(self, grad_box, grad_prob):
        g = self.conv4_2.backward(grad_box) + self.conv4_1.backward(self.softmax4_1.backward(grad_prob))
        g = self.conv2.backward(self.prelu2.backward(self.conv3.backward(self.prelu3.backward(g))))
        return self.conv1.backward(self.prelu1.backward(self.pool1.backward(g)))


class RNet(nn.Module):
    """Refine net: convolutions, then a channels-last flatten (permute to N, W, H, C as the
    original Caffe model) into dense layers; box regression and face probabilities."""

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3, dtype=dtype), nn.PReLU(28, dtype=dtype)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3, dtype=dtype), nn.PReLU(48, dtype=dtype)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2, dtype=dtype), nn.PReLU(64, dtype=dtype)
        self.permute, self.flatten = nn.Permute(0, 3, 2, 1), nn.Flatten()
        self.dense4, self.prelu4 = nn.Linear(576, 128, dtype=dtype), nn.PReLU(128, dtype=dtype)
        self.dense5_1, self.softmax5_1 = nn.Linear(128, 2, dtype=dtype), nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4, dtype=dtype)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(self._input(x))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.flatten(self.permute(self.prelu3(self.conv3(x))))
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))

    def backward(self, grad_box, grad_prob):
        g = self.dense5_2.backward(grad_box) + self.dense5_1.backward(self.softmax5_1.backward(grad_prob))
        g = self.permute.backward(self.flatten.backward(self.dense4.backward(self.prelu4.backward(g))))
        g = self.conv3.backward(self.prelu3.backward(g))
        g = self.conv2.backward(self.prelu2.backward(self.pool2.backward(g)))
        return self.conv1.backward(self.prelu1.backward(self.pool1.backward(g)))


def _torch_nets(torch):
    tnn = torch.nn

    class TPNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = tnn.Conv2d(3, 10, 3), tnn.PReLU(10)
            self.pool1 = tnn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2, self.prelu2 = tnn.Conv2d(10, 16, 3), tnn.PReLU(16)
            self.conv3, self.prelu3 = tnn.Conv2d(16, 32, 3), tnn.PReLU(32)
            self.conv4_1, self.softmax4_1 = tnn.Conv2d(32, 2, 1), tnn.Softmax(dim=1)
            self.conv4_2 = tnn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))

    class TRNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = tnn.Conv2d(3, 28, 3), tnn.PReLU(28)
            self.pool1 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = tnn.Conv2d(28, 48, 3), tnn.PReLU(48)
            self.pool2 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = tnn.Conv2d(48, 64, 2), tnn.PReLU(64)
            self.dense4, self.prelu4 = tnn.Linear(576, 128), tnn.PReLU(128)
            self.dense5_1, self.softmax5_1 = tnn.Linear(128, 2), tnn.Softmax(dim=1)
            self.dense5_2 = tnn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
            return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))

    return TPNet, TRNet


def _randomise(torch, tm, rng):
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, tuple(p.shape))))


def _sd(tm):
    return {k: v.detach().numpy() for k, v in tm.state_dict().items()}


@pytest.mark.parametrize("net,shape", [("pnet", (2, 3, 31, 27)), ("pnet", (1, 3, 12, 12)), ("rnet", (3, 3, 24, 24))])
def test_face_detector_from_torch_state_dict(net, shape, backend, dtype, rng, torch):
    TPNet, TRNet = _torch_nets(torch)
    tm = (TPNet if net == "pnet" else TRNet)().to(torch.float64 if dtype == np.float64 else torch.float32)
    _randomise(torch, tm, rng)
    m = (PNet if net == "pnet" else RNet)(dtype=dtype)
    assert list(m.state_dict()) == list(tm.state_dict())
    m.load_state_dict(_sd(tm))
    x = rng.uniform(-1, 1, shape).astype(dtype)
    xt = to_torch(torch, x, True)
    box_t, prob_t = tm(xt)
    box, prob = m(x)
    assert box.dtype == prob.dtype == dtype
    assert_close(box, box_t.detach().numpy(), dtype, scale=10)
    assert_close(prob, prob_t.detach().numpy(), dtype, scale=10)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)  # softmax over the channels
    g_box = rng.standard_normal(box.shape).astype(dtype)
    g_prob = rng.standard_normal(prob.shape).astype(dtype)
    torch.autograd.backward([box_t, prob_t], [to_torch(torch, g_box), to_torch(torch, g_prob)])
    assert_close(m.backward(g_box, g_prob), xt.grad.numpy(), dtype, scale=30)
    tgrads = dict(tm.named_parameters())
    for name, p in m.named_parameters():
        assert_close(p.grad, tgrads[name].grad.numpy(), dtype, scale=100, err_msg=name)


# ------------------------------------------------------------------------------ ResNet
def _torch_resnet(torch, layers=(1, 1), widths=(32, 64), stem=16):
    tnn = torch.nn

    class TBlock(tnn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                 tnn.BatchNorm2d(planes))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class TResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(1, stem, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(stem)
            self.relu = tnn.ReLU()
            planes = stem
            for i, (n, w) in enumerate(zip(layers, widths)):
                setattr(self, f"layer{i + 1}", tnn.Sequential(*[TBlock(planes if j == 0 else w, w, 2 if j == 0 else 1)
                                                                 for j in range(n)]))
                planes = w
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(planes, 10)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            for i in range(len(layers)):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return TResNet()


@pytest.mark.parametrize("layers", [(1, 1), (2, 1)], ids=["default", "two-blocks"])
def test_resnet_matches_torch(layers, backend, dtype, rng, torch):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tm = _torch_resnet(torch, layers).to(tdt)
    m = ResNet(layers=layers, dtype=dtype)
    assert list(m.state_dict()) == list(tm.state_dict())
    _randomise(torch, tm, rng)
    m.load_state_dict(_sd(tm))
    for step in range(2):  # train mode: batch statistics, running statistics updated
        x = rng.random((4, 1, 28, 28)).astype(dtype)
        t = rng.integers(0, 10, 4)
        xt = to_torch(torch, x, True)
        tm.zero_grad()
        m.zero_grad()
        yt = tm(xt)
        loss_t = torch.nn.functional.cross_entropy(yt, torch.from_numpy(t))
        loss_t.backward()
        logits = m(x)
        assert_close(logits, yt.detach().numpy(), dtype, scale=30)
        assert_close(fastnn.functional.cross_entropy(logits, t), loss_t.detach().numpy(), dtype, scale=30)
        gx = m.backward(fastnn.functional.cross_entropy_backward(logits, t))
        assert_close(gx, xt.grad.numpy(), dtype, scale=300)
        tgrads = dict(tm.named_parameters())
        for name, p in m.named_parameters():
            assert_close(p.grad, tgrads[name].grad.numpy(), dtype, scale=300, err_msg=name)
    for k, v in _sd(tm).items():
        assert_close(m.state_dict()[k], v, dtype, scale=30, err_msg=k)
    m.eval()
    tm.eval()
    x = rng.random((3, 1, 28, 28)).astype(dtype)
    assert_close(m(x), tm(to_torch(torch, x)).detach().numpy(), dtype, scale=30)


def test_basic_block_identity_and_downsample_paths(rng):
    same = BasicBlock(8, 8, dtype=np.float64)
    down = BasicBlock(8, 16, stride=2, dtype=np.float64)
    assert same.downsample is None and isinstance(down.downsample, nn.Sequential)
    x = rng.standard_normal((2, 8, 6, 6))
    assert same(x).shape == (2, 8, 6, 6) and down(x).shape == (2, 16, 3, 3)
    assert same.backward(np.ones((2, 8, 6, 6))).shape == x.shape
    assert down.backward(np.ones((2, 16, 3, 3))).shape == x.shape
    with pytest.raises(ValueError, match="layers, widths"):
        ResNet(layers=(1,), widths=(8, 16))


def test_cli_train_resnet(tmp_path, monkeypatch, capsys):
    from test_datasets_cli import write_idx

    from fastnn import cli

    write_idx(tmp_path)  # a small learnable MNIST-shaped set: class k lights up row block k
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    assert cli.main(["train", "resnet", "--epochs", "2", "--batch-size", "32", "--no-progress", "--limit", "480"]) == 0
    out = capsys.readouterr().out
    epochs = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    assert len(epochs) == 2 and all(" s (" in ln for ln in epochs)
    acc = float([ln for ln in out.splitlines() if ln.startswith("test accuracy: ")][-1].split()[-1].rstrip("%"))
    assert acc > 50  # chance is 10 %
