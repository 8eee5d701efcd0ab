"""CNN inference bench: PyTorch vs oddity (tch), same network, same run.

The EfficientNet-Lite networks of src/learn/net.rs (MBConv, ReLU6, no
squeeze-excite; the B0 stage table; tiny = width 0.25 / depth 0.25) rebuilt
here in PyTorch, 5-band 64x64 inputs, batch 64, eval mode, no_grad, the same
thread count. Prints images/s for both and the ratio oddity / PyTorch.
"""
import math, os, subprocess, sys, time
import torch
import torch.nn as nn

STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
CONFIGS = {"tiny": dict(width=0.25, depth=0.25, stem=16, embed=128), "lite0": dict(width=1.0, depth=1.0, stem=32, embed=1280)}

def round_filters(c, width):
    c = c * width
    new = max(int(c + 4) // 8 * 8, 8)
    return new + 8 if new < 0.9 * c else new

def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)

class MBConv(nn.Module):
    def __init__(self, i, o, expand, k, stride):
        super().__init__()
        mid = i * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(i, mid, 1, bias=False), bn(mid), nn.ReLU6()]
        layers += [nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), bn(mid), nn.ReLU6(),
                   nn.Conv2d(mid, o, 1, bias=False), bn(o)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and i == o

    def forward(self, x):
        h = self.body(x)
        return h + x if self.residual else h

def build(name, channels=5, classes=2):
    cfg = CONFIGS[name]
    layers = [nn.Conv2d(channels, cfg["stem"], 3, 2, 1, bias=False), bn(cfg["stem"]), nn.ReLU6()]
    c = cfg["stem"]
    for expand, k, stride, out, repeats in STAGES:
        o = round_filters(out, cfg["width"])
        for r in range(max(1, math.ceil(cfg["depth"] * repeats))):
            layers.append(MBConv(c, o, expand, k, stride if r == 0 else 1))
            c = o
    layers += [nn.Conv2d(c, cfg["embed"], 1, bias=False), bn(cfg["embed"]), nn.ReLU6(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(cfg["embed"], classes)]
    return nn.Sequential(*layers).eval()

def bench_torch(name, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build(name)
    x = torch.randn(64, 5, 64, 64)
    with torch.no_grad():
        for _ in range(3):
            net(x)
        t = time.perf_counter(); images = 0
        while time.perf_counter() - t < 3.0:
            assert net(x).shape == (64, 2)
            images += 64
    return images / (time.perf_counter() - t), sum(p.numel() for p in net.parameters())

if __name__ == "__main__":  # scripts/bench-infer imports build()
    bench_bin, threads = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    rust = {}
    for line in subprocess.run([bench_bin, str(threads)], check=True, capture_output=True, text=True).stdout.splitlines():
        kv = dict(p.split("=") for p in line.split())
        rust[kv["net"]] = (float(kv["images_per_s"]), int(kv["params"]))
    print(f"CNN inference, 5x64x64, batch 64, {threads} threads, CPU ({os.cpu_count()} cores), torch {torch.__version__}")
    print(f"{'net':<7} {'params':>9} {'PyTorch img/s':>14} {'oddity img/s':>13} {'ratio':>6}")
    for name in ("tiny", "lite0"):
        rate, params = bench_torch(name, threads)
        ours, our_params = rust[name]
        assert params == our_params, f"{name}: PyTorch {params} vs oddity {our_params} parameters: not the same network"
        print(f"{name:<7} {params:>9} {rate:>14.0f} {ours:>13.0f} {ours / rate:>6.2f}")
    print("goal: oddity >= 0.9x PyTorch")
