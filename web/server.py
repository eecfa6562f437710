#!/usr/bin/env python3
"""Serves the demo from this directory on localhost (data from $RESNET8_DATA under /data/).

With --check it drives headless Chromium through the page: the page runs
--images images of the CIFAR-10 head on WebGPU and posts its probabilities to
/result, and they are compared with the native CPU engine's (--expect, a
float32 .npy). The page's load event is held (/wait) until the result is in,
so Chromium's --screenshot shows the finished grid. Exit status 0 only when
every argmax matches and max |dprob| <= --tolerance (0 for an int8 model:
its dequantized outputs must equal the native CPU int8 engine's exactly).
"""
import argparse
import http.server
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path

WEB = Path(__file__).resolve().parent
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


class State:
    data_dir = Path(".")
    model = None  # --model: a model file served at /model/<its name>
    data = "cifar10/test_batch_head.bin"
    result = None
    done = threading.Event()


def png_of_record(index):
    """Record `index` of the CIFAR-10 file as a 32x32 RGB PNG, made in memory."""
    with open(State.data_dir / State.data, "rb") as f:
        f.seek(index * 3073 + 1)
        planar = f.read(3072)
    if len(planar) != 3072:
        return None
    rows = b"".join(b"\0" + bytes(planar[c * 1024 + y * 32 + x] for x in range(32) for c in range(3)) for y in range(32))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".safetensors": "application/octet-stream", ".onnx": "application/octet-stream", ".tflite": "application/octet-stream"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(WEB), **kwargs)

    def translate_path(self, path):
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean.startswith("/data/"):
            target = (State.data_dir / clean[len("/data/"):]).resolve()
            if State.data_dir.resolve() in target.parents:
                return str(target)
        return super().translate_path(path)

    def do_GET(self):
        if State.model is not None and self.path == f"/model/{State.model.name}":
            body = State.model.read_bytes()
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/png/"):
            png = png_of_record(int(self.path[5:].split(".")[0]))
            if png is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)
            return
        if self.path.startswith("/wait"):
            State.done.wait(timeout=900)
            self.send_response(200)
            self.send_header("content-type", "image/gif")
            self.send_header("content-length", str(len(GIF)))
            self.end_headers()
            self.wfile.write(GIF)
            return
        super().do_GET()

    def do_POST(self):
        if self.path != "/result":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        State.result = json.loads(body)
        self.send_response(204)
        self.end_headers()
        State.done.set()

    def log_message(self, fmt, *args):
        if os.environ.get("RESNET8_WEB_LOG"):
            super().log_message(fmt, *args)


def read_npy_f32(path):
    """A little-endian float32 C-order .npy as (shape, list of floats)."""
    raw = Path(path).read_bytes()
    if raw[:6] != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    major = raw[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", raw[8:10]), 10
    else:
        (hlen,), start = struct.unpack("<I", raw[8:12]), 12
    header = raw[start:start + hlen].decode("latin1")
    if "'<f4'" not in header or "'fortran_order': False" not in header:
        raise ValueError(f"{path}: expected little-endian float32 C order, header {header!r}")
    shape = tuple(int(d) for d in header.split("'shape': (")[1].split(")")[0].split(",") if d.strip())
    data = raw[start + hlen:]
    return shape, list(struct.unpack(f"<{len(data) // 4}f", data))


def argmax(row):
    return max(range(len(row)), key=lambda i: (row[i], -i))


def run_chromium(args, url):
    """Loads `url` in headless Chromium (WebGPU on SwiftShader), screenshot to
    --screenshot; returns (the page's posted result or None, Chromium's log)."""
    shot = Path(args.screenshot).resolve()
    shot.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        webgpu = [] if args.without_webgpu else ["--enable-unsafe-webgpu"]
        cmd = [args.chromium, "--headless", "--no-sandbox", *webgpu,
               "--use-angle=swiftshader", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
               "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1280,1600", url]
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=args.timeout)
            log = proc.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired:
            log = "(chromium timed out)"
    return State.result, log


def failed_page(r, log):
    tail = "\n".join(log.strip().splitlines()[-15:])
    print(tail, file=sys.stderr)
    reason = r["error"] if r else "the page posted no result"
    print(f"browser: FAILED: {reason}")
    return 1


def model_param():
    return f"&model=/model/{State.model.name}" if State.model else ""


def check_diff(args, port):
    """The page's diff mode against the native `resnet8 diff --json` of the same
    images: every layer within the tolerance (or, with --perturb, that layer
    named first over it) and the page's CPU engine equal to the native one bit
    for bit (per-layer digests)."""
    n = args.diff
    native = json.loads(Path(args.expect_diff).read_text())
    url = (f"http://127.0.0.1:{port}/index.html?hold&report&diff&images={n}&data=/data/{args.data}&limit={n}"
           f"&tolerance={args.tolerance_preset}"
           + (f"&reference=/data/{args.reference}" if args.reference else "")
           + (f"&perturb={args.perturb}" if args.perturb else "")
           + model_param()
           + (f"&kernel={args.kernel}" if args.kernel else ""))
    r, log = run_chromium(args, url)
    if r is None or "error" in r:
        return failed_page(r, log)
    d = r["diff"]
    layers = d["layers"]
    ours = {l["layer"]: l["cpu_digest"] for l in layers}
    theirs = {l["layer"]: l["cpu_digest"] for l in native["layers"]}
    same_cpu = native["images"] == d["images"] == n and ours == theirs
    max_rel = max(l["gpu_vs_cpu"]["max_rel"] for l in layers)
    first = d["first_over_tolerance"]
    print(f"browser diff: {d['images']} images, {len(layers)} layers, max rel {max_rel:.2e}, "
          f"first over tolerance: {first or 'none'}, cpu = native: {'yes' if same_cpu else 'no'}")
    if d["reference"]:
        missing = [l["layer"] for l in layers if l["gpu_vs_reference"] is None]
        print(f"browser diff reference {d['reference']}: gpu = reference argmax on {d['argmax_gpu_vs_reference']}/{n}, "
              f"layers absent from it: {', '.join(missing) or 'none'}")
    problems = []
    if not same_cpu:
        differ = sorted(k for k in theirs if ours.get(k) != theirs[k])
        problems.append(f"the page's CPU engine differs from the native one on {', '.join(differ) or 'the layer list'}")
    if args.perturb and first != args.perturb:
        problems.append(f"layer {args.perturb} was perturbed but the first over tolerance is {first}")
    if not args.perturb and first is not None:
        problems.append(f"{first} is over the {args.tolerance_preset} tolerance")
    if args.reference and d["argmax_gpu_vs_reference"] is None:
        problems.append("the reference was not compared")
    for p in problems:
        print(f"browser diff: FAILED: {p}")
    return 1 if problems else 0


def check(args, port):
    shape, expect = read_npy_f32(args.expect)
    n, k = args.images, shape[1]
    if shape[0] < n:
        sys.exit(f"browser: FAILED: {args.expect} holds {shape[0]} rows, fewer than --images {n}")
    url = (f"http://127.0.0.1:{port}/index.html?hold&report&auto&data=/data/{args.data}"
           f"&limit={n}&batch={args.batch}&pictures={args.pictures}"
           + model_param()
           + (f"&kernel={args.kernel}" if args.kernel else ""))
    shot = Path(args.screenshot).resolve()
    r, log = run_chromium(args, url)
    if r is None or "error" in r:
        return failed_page(r, log)
    probs = r["probs"]
    got = [probs[i * k:(i + 1) * k] for i in range(r["images"])]
    want = [expect[i * k:(i + 1) * k] for i in range(n)]
    matches = sum(argmax(a) == argmax(b) for a, b in zip(got, want))
    dmax = max(abs(x - y) for a, b in zip(got, want) for x, y in zip(a, b))
    # The same images as PNG files, through the page's picture path (decode, resize to 32x32).
    pics = r.get("pictures") or {"images": 0, "probs": []}
    pk = pics["images"]
    pgot = [pics["probs"][i * k:(i + 1) * k] for i in range(pk)]
    pmatches = sum(argmax(a) == argmax(b) for a, b in zip(pgot, want))
    pmax = max((abs(x - y) for a, b in zip(pgot, want) for x, y in zip(a, b)), default=0.0)
    print(f"pictures: {pk} PNG images, {pmatches} argmax matches, max |dprob| {pmax:.3e}")
    ok = (r["images"] == n and matches == n and dmax <= args.tolerance and shot.exists()
          and pk == args.pictures and pmatches == pk and pmax <= args.tolerance)
    print(f"screenshot: {shot}" if shot.exists() else "screenshot: MISSING")
    plan = r.get("kernels") or {}
    kernels = sorted({k for _, k in plan.get("kernels", [])})
    print(f"browser kernels: {', '.join(kernels)}; {plan.get('dispatches')} dispatches per batch, "
          f"8-bit input packed: {plan.get('packed_input')} ({plan.get('input_bytes_per_image')} bytes per image)")
    info = r.get("adapter_info") or {}
    print(f"browser adapter: subgroups {info.get('subgroups')} (min size {info.get('subgroup_min_size')}), "
          f"timestamps {info.get('timestamp_query')}, shader-f16 {info.get('shader_f16')}")
    print(f"browser images/s ({r.get('kind')}, {Path(args.model).name if args.model else 'pkg/model.safetensors'}): "
          f"{r['images_per_sec']:.1f}")
    times = r.get("layer_times") or []
    # With timestamp queries the page times its last batch: one positive time per dispatch.
    if (r.get("adapter_info") or {}).get("timestamp_query"):
        timed = len(times) == plan.get("dispatches") and all(t["ms"] > 0 for t in times)
        if not timed:
            print(f"browser: layer times missing or not positive: {times}")
        ok = ok and timed
    if times:
        total = sum(t["ms"] for t in times)
        print(f"browser GPU time per layer (last batch), {total:.1f} ms in all:")
        nw = min(max(len(t['node']) for t in times), 28)  # TFLite's long tensor names overflow
        ow = max(len(t['op']) for t in times)
        for t in times:
            print(f"  {t['node']:<{nw}} {t['op']:<{ow}} {t['ms']:9.3f} ms {100 * t['ms'] / total:5.1f}%")
    if not ok:
        print(f"browser: FAILED (need {n} images, all argmax equal, max |dprob| <= {args.tolerance}, a screenshot)")
    acc = "n/a" if r.get("accuracy") is None else f"{r['accuracy']:.4f}"
    print(f"browser: {r['images']} images, {matches} argmax matches, max |dprob| {dmax:.3e}, "
          f"accuracy {acc}, adapter {r['adapter']}")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--data-dir", default=os.environ.get("RESNET8_DATA", str(WEB.parent.parent / "shared" / "data")))
    p.add_argument("--check", action="store_true")
    p.add_argument("--model", help="a model file for the page (.safetensors or .tflite; default pkg/model.safetensors)")
    p.add_argument("--expect", help="native CPU probabilities (.npy) to compare with")
    p.add_argument("--data", default="cifar10/test_batch_head.bin", help="dataset path under --data-dir")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--pictures", type=int, default=16, help="also run this many images as PNG files")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--kernel", help="force a conv kernel variant in the page (?kernel=)")
    p.add_argument("--screenshot", default=str(WEB.parent / "target" / "web-check" / "screenshot.png"))
    p.add_argument("--chromium", default="chromium")
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--diff", type=int, metavar="N", help="run the page's diff mode on N images instead")
    p.add_argument("--expect-diff", help="with --diff: `resnet8 diff --json` of the same images (native)")
    p.add_argument("--tolerance-preset", default="balanced", choices=["strict", "balanced", "permissive"])
    p.add_argument("--reference", help="with --diff: a Keras per-layer .npz under --data-dir")
    p.add_argument("--perturb", metavar="LAYER", help="with --diff: spoil LAYER's GPU output; the check passes "
                   "only if the page names it as the first layer over tolerance")
    p.add_argument("--without-webgpu", action="store_true", help="start Chromium without WebGPU (to see the page say so)")
    args = p.parse_args()
    State.data_dir = Path(args.data_dir)
    State.data = args.data
    State.model = Path(args.model).resolve() if args.model else None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0 if args.check else args.port), Handler)
    port = server.server_address[1]
    if not args.check:
        print(f"serving {WEB} at http://127.0.0.1:{port}/ (data from {State.data_dir}); Ctrl-C to stop")
        server.serve_forever()
        return 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return check_diff(args, port) if args.diff else check(args, port)
    finally:
        State.done.set()
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
