#!/usr/bin/env python3
"""PyTorch baseline for `ortho-rnn bench`: the same copy-task training iteration on the same device.

One iteration: a batch of the copy task (delay T, so T + 20 steps, one-hot inputs of 10 symbols), the
forward pass, softmax cross-entropy at every step, BPTT, global-norm clipping at 100, and the
optimizer step (RMSprop, rho 0.9, as `ortho-rnn bench` defaults). Two implementations:

- `cudnn_rnn`: `torch.nn.RNN` (tanh; cuDNN on a GPU) with a linear readout;
- `factorized_loop`: a hand-written step loop of the factorized model, W = U diag(s) V^T with the
  spectral margin s = 2m (sigmoid(p) - 1/2) + 1 (m = 1), U and V moved by geodesic Cayley steps
  M <- (I + eta/2 A)^{-1} (I - eta/2 A) M, A = G M^T - M G^T (a linear solve, no inverse).

Prints one JSON line per (implementation, hidden): median and minimum milliseconds per iteration
after warm-up, with the device synchronized around each timed iteration. Runs on CPU torch too.

    python3 benches/torch_baseline.py --device cuda --hidden 128 500 1000 --seq-len 100 --batch 50
"""

import argparse
import json
import statistics
import time

import torch


def copy_batch(seq_len, batch, gen, device):
    """Inputs [L, B, 10] one-hot and targets [L, B] of the copy task (L = seq_len + 20)."""
    L = seq_len + 20
    symbols = torch.randint(1, 9, (batch, 10), generator=gen)
    seq = torch.zeros(batch, L, dtype=torch.long)
    seq[:, :10] = symbols
    seq[:, seq_len + 9] = 9
    target = torch.zeros(batch, L, dtype=torch.long)
    target[:, -10:] = symbols
    x = torch.nn.functional.one_hot(seq, 10).float().transpose(0, 1).contiguous()
    return x.to(device), target.transpose(0, 1).contiguous().to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_iters(step, data, iters, warmup, device):
    times = []
    for i in range(iters + warmup):
        x, y = data[i % len(data)]
        sync(device)
        t0 = time.perf_counter()
        step(x, y)
        sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def cudnn_rnn(hidden, device):
    rnn = torch.nn.RNN(10, hidden, nonlinearity="tanh").to(device)
    head = torch.nn.Linear(hidden, 9).to(device)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-8)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        h, _ = rnn(x)
        loss = torch.nn.functional.cross_entropy(head(h).reshape(-1, 9), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 100.0)
        opt.step()

    return step


def cayley_(m, g, eta):
    """In place: M <- (I + eta/2 A)^{-1} (I - eta/2 A) M with A = G M^T - M G^T."""
    a = g @ m.T - m @ g.T
    eye = torch.eye(m.shape[0], device=m.device, dtype=m.dtype)
    m.copy_(torch.linalg.solve(eye + 0.5 * eta * a, (eye - 0.5 * eta * a) @ m))


def factorized_loop(hidden, device):
    n = hidden
    q = lambda: torch.linalg.qr(torch.randn(n, n))[0].to(device)  # noqa: E731
    u, v = q().requires_grad_(), q().requires_grad_()
    p = torch.zeros(n, device=device, requires_grad=True)
    w_in = (torch.randn(n, 10, device=device) * (2.0 / (n + 10)) ** 0.5).requires_grad_()
    b = torch.zeros(n, device=device, requires_grad=True)
    w_o = (torch.randn(9, n, device=device) * (2.0 / (n + 9)) ** 0.5).requires_grad_()
    b_o = torch.zeros(9, device=device, requires_grad=True)
    eucl = [p, w_in, b, w_o, b_o]
    opt = torch.optim.RMSprop(eucl, lr=1e-3, alpha=0.9, eps=1e-8)
    margin = 1.0

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        for t in (u, v):
            t.grad = None
        s = 2 * margin * (torch.sigmoid(p) - 0.5) + 1
        w = (u * s) @ v.T
        pre = x @ w_in.T + b  # all steps at once
        h = torch.zeros(x.shape[1], n, device=x.device)
        hs = []
        for t in range(x.shape[0]):
            h = torch.tanh(pre[t] + h @ w.T)
            hs.append(h)
        logits = torch.stack(hs) @ w_o.T + b_o
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(eucl + [u, v], 100.0)
        opt.step()
        with torch.no_grad():
            cayley_(u, u.grad, 1e-3)
            cayley_(v, v.grad, 1e-3)

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--hidden", type=int, nargs="+", default=[128])
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--impl", nargs="+", default=["cudnn_rnn", "factorized_loop"])
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    data = [copy_batch(args.seq_len, args.batch, gen, device) for _ in range(4)]
    builders = {"cudnn_rnn": cudnn_rnn, "factorized_loop": factorized_loop}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for impl in args.impl:
        for hidden in args.hidden:
            step = builders[impl](hidden, device)
            med, lo = time_iters(step, data, args.iters, args.warmup, device)
            print(json.dumps({
                "impl": impl, "device": name, "torch": torch.__version__, "hidden": hidden,
                "seq_len": args.seq_len, "batch": args.batch, "iters": args.iters,
                "median_ms": round(med, 3), "min_ms": round(lo, 3),
            }), flush=True)


if __name__ == "__main__":
    main()
