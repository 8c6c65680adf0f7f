#!/usr/bin/env python3
"""Replay an ortho-rnn trajectory dump in PyTorch (float64), independently of ortho-rnn's code.

    ortho-rnn train ... --dtype f64 --dump-trajectory DIR      # what ortho-rnn did
    python3 tools/torch_replay.py DIR                           # what PyTorch does from the same start

reads DIR/run.json, DIR/init.safetensors and DIR/batches.safetensors (see src/train/trajectory.rs),
rebuilds the model from the run specification, replays every dumped iteration and writes
DIR/reference.safetensors with the tensors of DIR/trajectory.safetensors: `loss`, `reg`,
`grad_norm`, `clipped` per iteration, `param_iters` and `after.{name}` (the parameters after those
iterations' updates). It then prints the largest relative differences between ortho-rnn and the
reference. `--golden FILE` also writes a small file for tests/trajectory.rs: the reference's values
(parameters after iterations 1, 2, 3, every 10th and the last), the initial weights (`init.{name}`)
and the run specification, with per-batch checksums in the metadata.

Independent implementations: the recurrences and losses are written out here with torch ops and
differentiated by autograd; the Cayley transforms use torch.linalg.solve, the exponential
torch.linalg.matrix_exp (autograd through it for expRNN / DTRIV), the Euclidean updates torch.optim
(SGD, RMSprop, Adam with coupled weight decay in the parameter groups ortho-rnn documents).
Conventions that ortho-rnn documents and this script follows (each is a choice, listed in the README):
- clipping: g <- g * clip / ||g|| when ||g|| > clip (TensorFlow's clip_by_global_norm);
  `--clip-rule torch` uses torch.nn.utils.clip_grad_norm_ (clip / (||g|| + 1e-6)) instead;
- weight decay: coupled L2 on W_in, W_o (and the LSTM's W_h) through the optimizer; on the
  composite recurrent matrix W through the gradient (dL/dW += wd W, before clipping);
- the spectral margin's parameter p gets the learning rate lr / (2m);
- skew parameters A enter through S = (A - A^T) / 2;
- DTRIV changes the base after iterations K, 2K, ... and starts at A = 0 (the dump's initial B).
Not replicated: ortho-rnn's drift guards (a QR repair of U, V or B when ||M^T M - I||_max exceeds
32 eps; in f64 a repair moves M by about 1e-14).

Needs torch and safetensors (pip install torch safetensors); CPU is enough.
"""

import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file, save_file

torch.set_default_dtype(torch.float64)

CLASSES_COPY = 9


def spectrum_kind(spec):
    s = spec["spectrum"]
    if isinstance(s, dict) and "Margin" in s:
        return "margin", float(s["Margin"])
    return ("orthogonal", None) if s == "Orthogonal" else ("free", None)


def check_task(task, t, x_idx, x, y):
    """The batch follows the task's definition (DESIGN.md section 3)."""
    kind, T = task["kind"], task.get("seq_len")
    if kind == "copy":
        assert x_idx is not None, "copy inputs must be one-hot"
        steps, batch = x_idx.shape
        assert steps == T + 20, f"copy batch {t}: {steps} steps, expected T + 20 = {T + 20}"
        sym = x_idx.long()
        assert ((sym[:10] >= 1) & (sym[:10] <= 8)).all(), f"copy batch {t}: symbols outside 1..8"
        assert (sym[10 : T + 9] == 0).all() and (sym[T + 10 :] == 0).all(), f"copy batch {t}: blanks"
        assert (sym[T + 9] == 9).all(), f"copy batch {t}: the delimiter is not at step T + 10"
        yy = y.long()
        assert (yy[: T + 10] == 0).all() and (yy[T + 10 :] == sym[:10]).all(), f"copy batch {t}: targets"
    elif kind == "adding":
        steps, batch, _ = x.shape
        assert steps == T
        vals, marks = x[..., 0], x[..., 1]
        assert ((vals >= 0) & (vals < 1)).all(), f"adding batch {t}: values outside [0, 1)"
        half = T // 2
        assert (marks[:half].sum(0) == 1).all() and (marks[half:].sum(0) == 1).all(), f"adding batch {t}: markers"
        want = (vals * marks).sum(0).float().double()
        assert torch.allclose(y.reshape(-1), want, rtol=0, atol=1e-6), f"adding batch {t}: targets"


class Replay:
    def __init__(self, run, init, clip_rule):
        self.run, self.clip_rule = run, clip_rule
        self.spec, self.opt_cfg, self.task = run["model"], run["optim"], run["task"]
        self.kind = self.spec["model"]
        self.p = {k: v.clone().double().requires_grad_(True) for k, v in init.items()}
        self.n = self.spec["hidden"]
        self.names = list(init.keys())
        self.step = 0
        kind = self.task["kind"]
        self.loss_kind = {"copy": "xent_every", "ptb": "xent_every", "adding": "mse_last"}.get(kind, "xent_last")
        self.frozen = {"B"} | ({"prelu_slope"} if not self.spec.get("prelu_trainable", True) else set())
        self.geodesic = set()
        if self.kind == "factorized":
            self.geodesic = {"U", "V"}
        elif self.kind == "orthogonal":
            self.geodesic = {"W"}
        neg = self.spec.get("neg")
        neg = self.n // 2 if neg is None else neg
        self.d = torch.tensor([-1.0 if i < neg else 1.0 for i in range(self.n)])
        self.build_optimizer()

    # --- the model -------------------------------------------------------------------------
    def spectrum(self):
        kind, m = spectrum_kind(self.spec)
        if kind == "margin":
            return 2 * m * (torch.sigmoid(self.p["p"]) - 0.5) + 1
        if kind == "free":
            return self.p["s"]
        return torch.ones(self.n)

    def recurrent(self):
        p, n = self.p, self.n
        eye = torch.eye(n)
        if self.kind in ("rnn", "orthogonal"):
            return p["W"]
        if self.kind == "factorized":
            return p["U"] @ torch.diag(self.spectrum()) @ p["V"].T
        s = (p["A"] - p["A"].T) / 2
        if self.kind == "scornn":
            return torch.linalg.solve(eye + s, eye - s) @ torch.diag(self.d)
        return p["B"] @ torch.linalg.matrix_exp(s)

    def act(self, a):
        name = self.spec["activation"]
        if name == "tanh":
            return torch.tanh(a)
        if name == "relu":
            return torch.relu(a)
        if name == "identity":
            return a
        if name == "prelu":
            return torch.clamp(a, min=0) + self.p["prelu_slope"] * torch.clamp(a, max=0)
        if name == "modrelu":
            return torch.sign(a) * torch.relu(a.abs() + self.p["modrelu_bias"])
        if name == "oplu":
            pairs = a.reshape(*a.shape[:-1], -1, 2)
            hi = torch.maximum(pairs[..., 0], pairs[..., 1])
            lo = torch.minimum(pairs[..., 0], pairs[..., 1])
            return torch.stack([hi, lo], dim=-1).reshape(a.shape)
        raise ValueError(f"activation {name}")

    def hidden_states(self, x):
        p = self.p
        steps, batch, _ = x.shape
        h = torch.zeros(batch, self.n)
        hs = []
        if self.kind == "lstm":
            c = torch.zeros(batch, self.n)
            n = self.n
            wci, wcf, wco = p["peep"][:n], p["peep"][n : 2 * n], p["peep"][2 * n :]
            for t in range(steps):
                z = x[t] @ p["W_in"].T + h @ p["W_h"].T + p["b"]
                zi, zf, zg, zo = z[:, :n], z[:, n : 2 * n], z[:, 2 * n : 3 * n], z[:, 3 * n :]
                i = torch.sigmoid(zi + wci * c)
                f = torch.sigmoid(zf + wcf * c)
                c = f * c + i * torch.tanh(zg)
                o = torch.sigmoid(zo + wco * c)
                h = o * torch.tanh(c)
                hs.append(h)
            return torch.stack(hs), None
        w = self.recurrent()
        for t in range(steps):
            h = self.act(x[t] @ p["W_in"].T + p["b"] + h @ w.T)
            hs.append(h)
        return torch.stack(hs), w

    def objective(self, x, y):
        """(loss, reg, objective) of one batch."""
        p = self.p
        h, w = self.hidden_states(x)
        if self.loss_kind == "xent_every":
            logits = h @ p["W_o"].T + p["b_o"]
            tgt = y.reshape(-1).long()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt, ignore_index=-1)
        elif self.loss_kind == "xent_last":
            logits = h[-1] @ p["W_o"].T + p["b_o"]
            loss = torch.nn.functional.cross_entropy(logits, y.reshape(-1).long(), ignore_index=-1)
        else:
            out = h[-1] @ p["W_o"].T + p["b_o"]
            loss = torch.nn.functional.mse_loss(out, y.reshape(out.shape))
        regs = self.spec["regs"]
        reg = torch.zeros(())
        extra = torch.zeros(())
        if w is not None:
            eye = torch.eye(self.n)
            if regs["soft_orth"] > 0:
                reg = reg + regs["soft_orth"] * ((w.T @ w - eye) ** 2).sum()
            if regs.get("gain_orth"):
                lam, g = regs["gain_orth"]
                if lam > 0:
                    reg = reg + lam * ((w @ w.T / g**2 - eye) ** 2).sum()
            if regs["spectrum_prior"] > 0:
                reg = reg + regs["spectrum_prior"] * ((self.spectrum() - 1) ** 2).sum()
            if regs["weight_decay"] > 0:
                # Composite weight decay: dL/dW += wd W; not part of the reported objective.
                extra = 0.5 * regs["weight_decay"] * (w**2).sum()
        return loss, reg, loss + reg + extra

    # --- the optimizer ---------------------------------------------------------------------
    def trained(self):
        return [k for k in self.names if k not in self.frozen]

    def build_optimizer(self):
        o = self.opt_cfg
        lr, wd = o["lr"], o["weight_decay"]
        decay = {"W_in", "W_o"} | ({"W_h"} if self.kind == "lstm" else set())
        kind, m = spectrum_kind(self.spec)
        groups = []
        for k in self.trained():
            if k in self.geodesic:
                continue
            g = {"params": [self.p[k]], "weight_decay": wd if k in decay else 0.0, "lr": lr}
            if k == "p" and kind == "margin":
                g["lr"] = lr / (2 * m)
            groups.append(g)
        rule = o["rule"]
        if "Sgd" in rule:
            r = rule["Sgd"]
            self.opt = torch.optim.SGD(groups, lr=lr, momentum=r["momentum"], nesterov=r["nesterov"])
        elif "RmsProp" in rule:
            r = rule["RmsProp"]
            self.opt = torch.optim.RMSprop(groups, lr=lr, alpha=r["rho"], eps=r["eps"])
        else:
            r = rule["Adam"]
            self.opt = torch.optim.Adam(groups, lr=lr, betas=(r["beta1"], r["beta2"]), eps=r["eps"])

    def iterate(self, x, y):
        for t in self.p.values():
            t.grad = None
        loss, reg, obj = self.objective(x, y)
        obj.backward()
        trained = [self.p[k] for k in self.trained()]
        for t in trained:
            if t.grad is None:
                t.grad = torch.zeros_like(t)
        norm = math.sqrt(sum(float((t.grad**2).sum()) for t in trained))
        clip = self.opt_cfg.get("clip")
        clipped = False
        if clip is not None:
            if self.clip_rule == "torch":
                torch.nn.utils.clip_grad_norm_(trained, clip)
                clipped = norm > clip
            elif norm > clip:
                for t in trained:
                    t.grad.mul_(clip / norm)
                clipped = True
        self.opt.step()
        eta = self.opt_cfg["geo_lr"]
        with torch.no_grad():
            for k in self.geodesic:
                m, g = self.p[k], self.p[k].grad
                a = g @ m.T - m @ g.T
                eye = torch.eye(m.shape[0])
                m.copy_(torch.linalg.solve(eye + eta / 2 * a, (eye - eta / 2 * a) @ m))
        self.step += 1
        k = self.spec.get("k")
        if self.kind == "dtriv" and k is not None and self.step % k == 0:
            with torch.no_grad():
                s = (self.p["A"] - self.p["A"].T) / 2
                self.p["B"].copy_(self.p["B"] @ torch.linalg.matrix_exp(s))
                self.p["A"].zero_()
        return float(loss.detach()), float(reg.detach()), norm, clipped


def batch_of(batches, i, input_dim):
    if f"x_index.{i}" in batches:
        idx = batches[f"x_index.{i}"].long()
        x = torch.nn.functional.one_hot(idx, input_dim).double()
        return x, idx, batches[f"y.{i}"].double()
    return batches[f"x.{i}"].double(), None, batches[f"y.{i}"].double()


def replay(d, clip_rule):
    meta = json.load(open(os.path.join(d, "run.json")))
    run = meta["run"]
    init = load_file(os.path.join(d, "init.safetensors"))
    batches = load_file(os.path.join(d, "batches.safetensors"))
    traj = load_file(os.path.join(d, "trajectory.safetensors"))
    r = Replay(run, init, clip_rule)
    iters = meta["iters"]
    keep = set(int(v) for v in traj["param_iters"].tolist())
    out = {"loss": [], "reg": [], "grad_norm": [], "clipped": []}
    after = {k: [] for k in r.names}
    sums = []
    input_dim = init["W_in"].shape[1]
    for i in range(1, iters + 1):
        x, idx, y = batch_of(batches, i, input_dim)
        check_task(run["task"], i, idx, x, y)
        sums.append([float(x.sum()), float(y.sum())])
        loss, reg, norm, clipped = r.iterate(x, y)
        for k, v in zip(out, (loss, reg, norm, 1.0 if clipped else 0.0)):
            out[k].append(v)
        if i in keep:
            for k in r.names:
                after[k].append(r.p[k].detach().clone())
    tensors = {k: torch.tensor(v) for k, v in out.items()}
    tensors["param_iters"] = traj["param_iters"].double()
    for k, v in after.items():
        tensors[f"after.{k}"] = torch.stack(v)
    return meta, init, traj, tensors, sums


def rel(a, b):
    scale = max(float(b.abs().max()), 1e-300)
    return float((a - b).abs().max()) / scale


def compare(traj, ref):
    """Largest relative differences, per quantity (normwise for parameters)."""
    rows = []
    for k in ("loss", "grad_norm", "reg"):
        a, b = traj[k], ref[k]
        d = ((a - b).abs() / b.abs().clamp(min=1e-300)).nan_to_num(0.0)
        if k == "reg":  # relative to the objective: an orthogonal W's penalty is rounding noise
            d = (a - b).abs() / (ref["loss"].abs() + b.abs())
        rows.append((k, float(d.max()), int(d.argmax()) + 1))
    rows.append(("clipped (iterations that differ)", float((traj["clipped"] != ref["clipped"]).sum()), 0))
    for k in sorted(ref):
        if k.startswith("after."):
            worst = max(rel(traj[k][j], ref[k][j]) for j in range(ref[k].shape[0]))
            rows.append((k, worst, 0))
    return rows


def golden_subset(iters):
    keep = {1, 2, 3, iters} | {i for i in range(10, iters + 1, 10)}
    return sorted(keep)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="trajectory dump directories")
    ap.add_argument("--golden", metavar="DIR", help="also write DIR/<dump name>.safetensors for tests/trajectory.rs")
    ap.add_argument("--clip-rule", choices=["tf", "torch"], default="tf")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    worst_all = 0.0
    for d in a.dirs:
        d = d.rstrip("/")
        meta, init, traj, ref, sums = replay(d, a.clip_rule)
        md = {"format": "ortho-rnn-reference/1", "run": json.dumps(meta["run"]), "torch": torch.__version__,
              "clip_rule": a.clip_rule}
        save_file(ref, os.path.join(d, "reference.safetensors"), metadata=md)
        rows = compare(traj, ref)
        worst = max(v for k, v, _ in rows if not k.startswith("clipped"))
        worst_all = max(worst_all, worst)
        print(f"{os.path.basename(d)}: {meta['iters']} iterations, ortho-rnn {meta['dtype']} vs torch float64: "
              f"largest relative difference {worst:.2e}; clipped in {int(ref['clipped'].sum())} iterations")
        if not a.quiet:
            for k, v, at in rows:
                print(f"    {k:<28} {v:.3e}" + (f" (iteration {at})" if at else ""))
        if a.golden:
            keep = golden_subset(meta["iters"])
            rows_kept = [i for i, it in enumerate(ref["param_iters"].long().tolist()) if it in keep]
            missing = set(keep) - set(int(ref["param_iters"][i]) for i in rows_kept)
            if missing:
                sys.exit(f"{d}: the dump lacks parameters after iterations {sorted(missing)}; dump with --dump-params-every 1")
            g = {k: ref[k] for k in ("loss", "reg", "grad_norm", "clipped")}
            g["param_iters"] = ref["param_iters"][rows_kept]
            for k in ref:
                if k.startswith("after."):
                    g[k] = ref[k][rows_kept].contiguous()
            for k, v in init.items():
                g[f"init.{k}"] = v.double()
            md["batch_sums"] = json.dumps(sums)
            os.makedirs(a.golden, exist_ok=True)
            save_file(g, os.path.join(a.golden, os.path.basename(d) + ".safetensors"), metadata=md)
    print(f"largest relative difference over all dumps: {worst_all:.2e}")


if __name__ == "__main__":
    main()
