#!/usr/bin/env python3
"""The distillation training step of recovery_bench.cpp (BM_DistillStep), in
PyTorch from Python, for the side-by-side tokens/s comparison.

Same model (stories260K, llama2.c layout), same math (interleaved RoPE, GQA
folded into batched matmuls with an additive causal mask, RMSNorm, SwiGLU),
gate/up fake-quantized INT2 g32 with LoRA r=32 alpha=64 adapters, KL(teacher ||
student) over the full vocabulary, AdamW on the adapters only; same batch,
sequence length and thread count.

Also the synthetic-data generation of recovery_bench.cpp (BM_Generate): hybrid
sampling from the teacher (BOS, a random first token, 2-4 greedy tokens, then
temperature 1.0 / top-k 50 sampling) of --gen-batch sequences together through
a KV cache, until every sequence has ended (EOS or BOS) or --gen-len tokens.
Its rate is decoded positions per second: batch x the longest sequence's
length (every step runs the whole batch), which does not depend on where the
random samples happen to stop.

  /usr/bin/python3 tests/bench/recovery/pytorch_step.py [--threads 2] [--batch 8]
      [--seq-len 256] [--steps 10] [--gen-batch 64] [--gen-len 256] [--gen-runs 3]
      [--mode both|train|generate] [--model PATH] [--json]
Prints tokens/s and peak RSS.
"""
import argparse
import math
import os
import resource
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F


def load_llama2c(path):
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("7i", f.read(28))
        data = np.frombuffer(f.read(), dtype=np.float32)
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        t = torch.from_numpy(data[off:off + n].copy()).view(*shape)
        off += n
        return t

    w = {"emb": take(vocab, dim), "rms_att": take(n_layers, dim), "wq": take(n_layers, dim, dim),
         "wk": take(n_layers, n_kv * hd, dim), "wv": take(n_layers, n_kv * hd, dim),
         "wo": take(n_layers, dim, dim), "rms_ffn": take(n_layers, dim),
         "w1": take(n_layers, hidden, dim), "w2": take(n_layers, dim, hidden),
         "w3": take(n_layers, hidden, dim), "rms_final": take(dim)}
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab,
               seq_len=seq_len, hd=hd, shared=shared)
    return cfg, w


def fake_quant(w, bits=2, group=32):
    out, inp = w.shape
    g = w.reshape(out, inp // group, group)
    mn, mx = g.amin(-1), g.amax(-1)
    qmax = 2 ** bits - 1
    scale = ((mx - mn) / qmax).clamp_min(1e-8).to(torch.bfloat16).float()
    zero = torch.round(-mn / scale).clamp(0, qmax)
    q = (torch.round(g / scale[..., None]) + zero[..., None]).clamp(0, qmax)
    return ((q - zero[..., None]) * scale[..., None]).reshape(out, inp)


class Model(torch.nn.Module):
    def __init__(self, cfg, w, quantize=False, rank=0, alpha=0.0):
        super().__init__()
        self.c = cfg
        self.w = {k: v.clone() for k, v in w.items()}
        if quantize:
            for l in range(cfg["n_layers"]):
                self.w["w1"][l] = fake_quant(self.w["w1"][l])
                self.w["w3"][l] = fake_quant(self.w["w3"][l])
        self.rank = rank
        self.scaling = alpha / rank if rank else 0.0
        self.lora = torch.nn.ParameterList()
        if rank:
            for l in range(cfg["n_layers"]):
                for _ in ("w1", "w3"):
                    a = torch.empty(rank, cfg["dim"]).uniform_(-1 / math.sqrt(cfg["dim"]),
                                                               1 / math.sqrt(cfg["dim"]))
                    self.lora.append(torch.nn.Parameter(a))
                    self.lora.append(torch.nn.Parameter(torch.zeros(cfg["hidden"], rank)))
        hd = cfg["hd"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd))
        ang = torch.outer(torch.arange(cfg["seq_len"], dtype=torch.float64), inv)
        self.cos, self.sin = ang.cos().float(), ang.sin().float()

    def rms(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g

    def rope(self, x, cos, sin):
        xp = x.unflatten(-1, (-1, 2))
        x0, x1 = xp[..., 0], xp[..., 1]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1).flatten(-2)

    def lin(self, x, l, name):
        y = torch.matmul(x, self.w[name][l].t())
        if self.rank and name in ("w1", "w3"):
            i = (l * 2 + (0 if name == "w1" else 1)) * 2
            y = y + torch.matmul(torch.matmul(x, self.lora[i].t()), self.lora[i + 1].t()) * self.scaling
        return y

    def new_cache(self, batch, max_len):
        c = self.c
        shape = (batch, c["n_kv"], max_len, c["hd"])
        return {"k": [torch.zeros(shape) for _ in range(c["n_layers"])],
                "v": [torch.zeros(shape) for _ in range(c["n_layers"])], "length": 0}

    def forward(self, ids, cache=None):
        c = self.c
        B, T = ids.shape
        H, KV, hd = c["n_heads"], c["n_kv"], c["hd"]
        rep = H // KV
        pos0 = cache["length"] if cache is not None else 0
        S = pos0 + T
        cos, sin = self.cos[pos0:S], self.sin[pos0:S]
        mask = None
        if T > 1:
            qi = torch.arange(pos0, S).unsqueeze(1)
            kj = torch.arange(S).unsqueeze(0)
            mask = torch.zeros(T, S).masked_fill_(kj > qi, float("-inf")).repeat(rep, 1)
        x = F.embedding(ids, self.w["emb"])
        for l in range(c["n_layers"]):
            xn = self.rms(x, self.w["rms_att"][l])
            q = self.lin(xn, l, "wq").view(B, T, H, hd)
            k = self.lin(xn, l, "wk").view(B, T, KV, hd)
            v = self.lin(xn, l, "wv").view(B, T, KV, hd)
            q = self.rope(q.transpose(1, 2), cos, sin)
            k = self.rope(k.transpose(1, 2), cos, sin)
            v = v.transpose(1, 2)
            if cache is not None:
                cache["k"][l][:, :, pos0:S].copy_(k)
                cache["v"][l][:, :, pos0:S].copy_(v)
                k, v = cache["k"][l][:, :, :S], cache["v"][l][:, :, :S]
            qg = q.reshape(B * KV, rep * T, hd)
            kt = k.reshape(B * KV, S, hd).transpose(1, 2)
            if mask is not None:
                att = torch.baddbmm(mask, qg, kt, beta=1.0, alpha=1.0 / math.sqrt(hd))
            else:
                att = torch.bmm(qg, kt) * (1.0 / math.sqrt(hd))
            att = torch.softmax(att, -1)
            y = torch.bmm(att, v.reshape(B * KV, S, hd)).view(B, H, T, hd).transpose(1, 2)
            x = x + self.lin(y.reshape(B, T, H * hd), l, "wo")
            xn = self.rms(x, self.w["rms_ffn"][l])
            x = x + self.lin(F.silu(self.lin(xn, l, "w1")) * self.lin(xn, l, "w3"), l, "w2")
        x = self.rms(x, self.w["rms_final"])
        if cache is not None:
            cache["length"] = S
        return torch.matmul(x, self.w["emb"].t())


def kl(teacher_logits, student_logits):
    log_pt = torch.log_softmax(teacher_logits, -1)
    log_ps = torch.log_softmax(student_logits, -1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean()


def generate(teacher, batch, max_len, gen, bos=1, eos=2, temperature=1.0, top_k=50):
    """One batch of hybrid sampling, as GenerateSynthetic in recovery/data/synthetic.cpp."""
    vocab = teacher.c["vocab"]
    firsts = torch.tensor([i for i in range(vocab) if i not in (bos, eos)])
    first = firsts[torch.randint(len(firsts), (batch,), generator=gen)]
    greedy = torch.randint(2, 5, (batch,), generator=gen)
    seqs = torch.stack((torch.full((batch,), bos), first), 1)
    done = torch.zeros(batch, dtype=torch.bool)
    cache = teacher.new_cache(batch, max_len)
    inp, step = seqs, 0
    with torch.no_grad():
        while seqs.shape[1] < max_len:
            logits = teacher(inp, cache)[:, -1]
            top_v, top_i = (logits / temperature).topk(top_k, -1)
            sampled = top_i.gather(1, torch.multinomial(torch.softmax(top_v, -1), 1, generator=gen)).squeeze(1)
            nxt = torch.where(step < greedy, logits.argmax(-1), sampled)
            seqs = torch.cat((seqs, nxt.unsqueeze(1)), 1)
            done |= (nxt == eos) | (nxt == bos)
            step += 1
            if bool(done.all()):
                break
            inp = nxt.unsqueeze(1)
    return seqs


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("LIFELINE_SHARED_DIR", os.path.join(here, "..", "..", "..", "..", "shared"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(shared, "models", "stories260k", "stories260K.bin"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--gen-len", type=int, default=256)
    ap.add_argument("--gen-runs", type=int, default=3)
    ap.add_argument("--mode", choices=("both", "train", "generate"), default="both")
    ap.add_argument("--json", action="store_true", help="one JSON object on the last line (compare.py reads it)")
    args = ap.parse_args()
    result = {"torch": torch.__version__, "threads": args.threads}
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg, w = load_llama2c(args.model)
    teacher = Model(cfg, w)
    student = Model(cfg, w, quantize=True, rank=32, alpha=64.0)
    opt = torch.optim.AdamW(student.lora.parameters(), lr=1e-3, weight_decay=0.0)
    ids = torch.randint(3, cfg["vocab"], (args.batch, args.seq_len))

    def step():
        opt.zero_grad()
        with torch.no_grad():
            t = teacher(ids)
        loss = kl(t, student(ids))
        loss.backward()
        opt.step()
        return loss.item()

    if args.mode in ("both", "train"):
        for _ in range(args.warmup):
            step()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        tokens = args.batch * args.seq_len * args.steps
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        result.update(train_ms_per_step=dt / args.steps * 1000, train_tokens_per_s=tokens / dt)
        print(f"pytorch_step: torch {torch.__version__}, threads {args.threads}, batch {args.batch}x{args.seq_len}: "
              f"{dt / args.steps * 1000:.1f} ms/step (CPU {cpu / args.steps * 1000:.1f} ms/step), "
              f"{tokens / dt:.0f} tokens/s, peak RSS {rss:.0f} MiB")
    if args.mode in ("both", "generate"):
        gen = torch.Generator().manual_seed(0)
        generate(teacher, args.gen_batch, min(args.gen_len, 32), gen)  # warm-up
        t0, c0, positions = time.perf_counter(), time.process_time(), 0
        for _ in range(args.gen_runs):
            seqs = generate(teacher, args.gen_batch, args.gen_len, gen)
            positions += seqs.shape[0] * seqs.shape[1]
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        result.update(generate_ms_per_batch=dt / args.gen_runs * 1000, generate_positions_per_s=positions / dt)
        print(f"pytorch_generate: torch {torch.__version__}, threads {args.threads}, batch {args.gen_batch}, "
              f"max {args.gen_len} tokens: {dt / args.gen_runs * 1000:.1f} ms/batch (CPU {cpu / args.gen_runs * 1000:.1f}"
              f" ms/batch), {positions / dt:.0f} positions/s ({positions / cpu:.0f} per CPU second), "
              f"peak RSS {rss:.0f} MiB")
    if args.json:
        import json
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps(result))


if __name__ == "__main__":
    main()
