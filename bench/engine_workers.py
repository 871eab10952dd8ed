#!/usr/bin/env python3
"""Time one engine worker on its own: understudy-stt or understudy-llm, driven
over its stdin/stdout protocol (docs/ipc.md framing: u32 LE header_len, u32 LE
payload_len, JSON header, payload). Stdlib only, so it runs on a bare GPU
machine. Appends one JSON line per run to --out and prints a summary.
How the figures in docs/gpu.md were made (CPU vs GPU on the same binary):

  python3 bench/engine_workers.py llm --bin target/cuda/release/understudy-llm \
      --model MODEL.gguf --threads 8 --gpu-layers 999 --label llm-gpu --out r.jsonl --log w.log
  python3 bench/engine_workers.py stt --bin target/cuda/release/understudy-stt \
      --model ggml-tiny.en.bin --vad ggml-silero-v6.2.0.bin --audio a.wav,b.wav \
      --threads 8 --gpu --label stt-gpu --out r.jsonl --log w.log

Audio: 16 kHz mono 16-bit WAV files. LLM: a ~530-token system prompt, cold
(new first line: no prompt cache) then cached (same prompt, other questions)."""
import argparse, json, os, statistics, struct, subprocess, sys, threading, time, wave


class Worker:
    def __init__(self, argv, env, log_path, ready_timeout):
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.log, env=env)
        self.next_id = 1
        t0 = time.perf_counter()
        timer = threading.Timer(ready_timeout, self.p.kill)
        timer.start()
        try:
            hdr, _ = self.read()
        finally:
            timer.cancel()
        self.ready_wall_ms = (time.perf_counter() - t0) * 1e3
        if hdr is None or hdr.get("kind") != "ready":
            raise RuntimeError(f"no ready: {hdr}")
        self.ready = hdr

    def read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.p.stdout.read(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read(self):
        head = self.read_exact(8)
        if head is None:
            return None, None
        hl, pl = struct.unpack("<II", head)
        hdr = json.loads(self.read_exact(hl))
        payload = self.read_exact(pl) if pl else b""
        return hdr, payload

    def request(self, body, payload=b"", timeout=120):
        rid = self.next_id
        self.next_id += 1
        body = dict(body, id=rid)
        h = json.dumps(body).encode()
        t0 = time.perf_counter()
        self.p.stdin.write(struct.pack("<II", len(h), len(payload)) + h + payload)
        self.p.stdin.flush()
        timer = threading.Timer(timeout, self.p.kill)
        timer.start()
        try:
            while True:
                hdr, _ = self.read()
                if hdr is None:
                    raise RuntimeError("worker closed its stdout")
                if hdr.get("id") == rid and not hdr.get("more"):
                    return hdr, (time.perf_counter() - t0) * 1e3
        finally:
            timer.cancel()

    def close(self):
        try:
            h = json.dumps({"id": self.next_id, "kind": "shutdown"}).encode()
            self.p.stdin.write(struct.pack("<II", len(h), 0) + h)
            self.p.stdin.close()
            self.p.wait(timeout=20)
        except Exception:
            self.p.kill()


def summary(xs):
    xs = sorted(xs)
    p95 = xs[max(0, -(-95 * len(xs) // 100) - 1)]  # nearest rank
    return {"p50": round(statistics.median(xs), 1), "p95": round(p95, 1), "min": round(xs[0], 1),
            "max": round(xs[-1], 1), "n": len(xs)}


def pcm(path):
    w = wave.open(path)
    assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
    return w.readframes(w.getnframes()), w.getnframes() / 16000


def bench_stt(a, env):
    argv = [a.bin, "--model", a.model, "--vad-model", a.vad, "--threads", str(a.threads)]
    if a.gpu:
        argv.append("--gpu")
    w = Worker(argv, env, a.log, a.ready_timeout)
    res = {"engine": "stt", "label": a.label, "argv": argv[1:], "ready": w.ready,
           "ready_wall_ms": round(w.ready_wall_ms, 1), "clips": {}}
    try:
        for path in a.audio.split(","):
            data, secs = pcm(path)
            first, first_rt = w.request({"kind": "transcribe"}, data)
            rts, totals = [], []
            for _ in range(a.reps):
                hdr, rt = w.request({"kind": "transcribe"}, data)
                rts.append(rt)
                totals.append(hdr["timings"]["total_ms"])
            res["clips"][os.path.basename(path)] = {
                "audio_s": round(secs, 2), "text": hdr.get("text"),
                "first_request_ms": round(first_rt, 1),
                "round_trip_ms": summary(rts), "worker_total_ms": summary(totals),
                "vad_ms": hdr["timings"].get("vad_ms")}
    finally:
        w.close()
    return res


SYSTEM = (
    "You are the phone assistant of Northwind Parcel Services. Answer callers briefly and "
    "politely. Facts: we deliver Monday to Saturday from 8 am to 8 pm; Sunday deliveries only "
    "for Express parcels. Tracking numbers start with NW and have 10 digits. A missed delivery "
    "is retried the next working day, twice; after the third attempt the parcel waits 7 days at "
    "the nearest pickup point, then goes back to the sender. Callers can change the delivery "
    "address until the parcel is out for delivery, and can ask for a safe place (porch, garage, "
    "neighbour). Damaged parcels: photograph the box and the contents, keep the packaging, and "
    "file a claim within 14 days; refunds take 5 to 10 working days. Express costs 12 dollars "
    "extra and guarantees delivery by noon. International parcels need a customs form; duties "
    "are paid by the receiver unless the sender chose DDP. We do not ship batteries over 100 Wh, "
    "liquids over 1 litre, or live animals. Opening hours of the call centre: 7 am to 10 pm every "
    "day. For anything you cannot answer, offer to transfer the caller to a human agent. "
) * 2
QUESTIONS = [
    "My parcel NW1234567890 did not arrive yesterday. What happens now? Explain every step in detail.",
    "Can I change the delivery address of my parcel, and how much does Express cost? Please explain at length.",
    "What are all the rules for sending a parcel abroad? Give me a long and complete answer.",
    "My box arrived damaged. Tell me everything I need to do, step by step, in detail.",
    "Which items can I not ship, and when is your call centre open? Answer in detail.",
]


def bench_llm(a, env):
    argv = [a.bin, "--model", a.model, "--threads", str(a.threads),
            "--gpu-layers", str(a.gpu_layers), "--ctx", "4096"]
    w = Worker(argv, env, a.log, a.ready_timeout)
    res = {"engine": "llm", "label": a.label, "argv": argv[1:], "ready": w.ready,
           "ready_wall_ms": round(w.ready_wall_ms, 1)}

    def gen(system, question, max_tokens):
        hdr, rt = w.request({"kind": "generate", "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0.0, "stream": False}, timeout=180)
        if hdr.get("kind") != "generated":
            raise RuntimeError(f"generate failed: {hdr}")
        t = hdr["timings"]
        n = hdr["completion_tokens"]
        decode = (n - 1) / ((t["total_ms"] - t["first_output_ms"]) / 1e3) if n > 1 else None
        return {"prompt_tokens": hdr["prompt_tokens"], "cached_tokens": hdr["cached_tokens"],
                "completion_tokens": n, "first_output_ms": round(t["first_output_ms"], 1),
                "total_ms": round(t["total_ms"], 1), "round_trip_ms": round(rt, 1),
                "decode_tok_s": round(decode, 1) if decode else None, "text": hdr["text"][:160]}
    try:
        # 1. The very first request after load (one-time warm-up costs included).
        res["first_ever"] = gen("Session 0. " + SYSTEM, QUESTIONS[0], a.max_tokens)
        # 2. Cold prompts on a warm engine: a new first line defeats the prefix cache.
        cold = [gen(f"Session {i}. " + SYSTEM, QUESTIONS[i % 5], a.max_tokens) for i in range(1, 4)]
        # 3. Cached: same system prompt as the last cold one, other questions.
        cached = [gen("Session 3. " + SYSTEM, QUESTIONS[(i + 1) % 5], a.max_tokens) for i in range(4)]
        res["cold"] = cold
        res["cached"] = cached
        dec = [r["decode_tok_s"] for r in cold + cached if r["decode_tok_s"]]
        res["summary"] = {
            "prompt_tokens": cold[0]["prompt_tokens"],
            "first_ever_first_token_ms": res["first_ever"]["first_output_ms"],
            "cold_first_token_ms": summary([r["first_output_ms"] for r in cold]),
            "cached_first_token_ms": summary([r["first_output_ms"] for r in cached]),
            "cached_tokens": [r["cached_tokens"] for r in cached],
            "completion_tokens": [r["completion_tokens"] for r in cold + cached],
            "decode_tok_s": summary(dec) if dec else None,
        }
    finally:
        w.close()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=["stt", "llm"])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vad")
    ap.add_argument("--audio")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--ready-timeout", type=float, default=120)
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    env = dict(os.environ)
    t0 = time.time()
    try:
        res = bench_stt(a, env) if a.engine == "stt" else bench_llm(a, env)
    except Exception as e:  # record the failure and go on with the next run
        res = {"engine": a.engine, "label": a.label, "error": repr(e)}
    res["wall_s"] = round(time.time() - t0, 1)
    with open(a.out, "a") as f:
        f.write(json.dumps(res) + "\n")
    brief = res.get("summary") or {k: {"rt": v["round_trip_ms"], "text": v["text"]}
                                   for k, v in res.get("clips", {}).items()} or res.get("error")
    print(f"[{a.label}] {res['wall_s']} s: {json.dumps(brief)}", flush=True)


if __name__ == "__main__":
    main()
