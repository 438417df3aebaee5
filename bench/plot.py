#!/usr/bin/env python3
"""Plots and tabulates spool-bench JSON lines (bench/run_matrix.sh output).

  python3 bench/plot.py results.jsonl [...]          # plot to spool-bench.png
  python3 bench/plot.py --run DIR                     # run bench/run_matrix.sh DIR first
  python3 bench/plot.py --table results.jsonl         # median table with ratios (markdown)

Repeated runs of the same (engine, workload, size, producers) are reduced to their median.
The plot has four panels: msgs/s and p99 latency against producers (ingest, 4 KiB), and
MB/s and p99 latency against message size (ingest, 64 producers). It needs matplotlib
(Debian: python3-matplotlib); without it the same series are printed as text.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys

ENGINES = ["raw", "log", "spool", "rocksdb", "files"]
FIELDS = ["msgs_per_s", "MB_per_s", "p50_us", "p99_us", "p999_us", "fsyncs_per_s",
          "bytes_per_fsync", "cpu_us_per_msg", "space_used_bytes", "space_live_bytes"]


def load(paths):
    runs = []
    for path in paths:
        with (sys.stdin if path == "-" else open(path)) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    runs.append(json.loads(line))
    return runs


def medians(runs):
    """{(engine, workload, size, producers): {field: median, "n": count}}"""
    groups = {}
    for r in runs:
        key = (r["engine"], r["workload"], r["size"], r["producers"])
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():
        m = {"n": len(rs), "runs": rs}
        for f in FIELDS:
            values = [r[f] for r in rs if f in r]
            if values:
                m[f] = statistics.median(values)
        out[key] = m
    return out


def series(med, workload, size=None, producers=None):
    """{engine: [(x, stats)]} along producers (size fixed) or size (producers fixed)."""
    s = {}
    for (engine, w, sz, p), m in med.items():
        if w != workload:
            continue
        if size is not None and sz == size:
            s.setdefault(engine, []).append((p, m))
        elif producers is not None and p == producers and sz > 0:
            s.setdefault(engine, []).append((sz, m))
    for v in s.values():
        v.sort(key=lambda t: t[0])
    return s


COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def svg_panel(s, field, xlabel, title, x0, y0, w, h):
    """One log-log panel as SVG elements: axes, decade grid, a line per engine, legend."""
    pts = [(x, m[field]) for e in s for x, m in s[e] if m.get(field, 0) > 0 and x > 0]
    if not pts:
        return []
    lx = [math.log10(x) for x, _ in pts]
    ly = [math.log10(y) for _, y in pts]
    xmin, xmax = min(lx), max(lx) + 1e-9
    ymin, ymax = math.floor(min(ly)), math.ceil(max(ly) + 1e-9)
    left, bottom = x0 + 70, y0 + h - 45
    pw, ph = w - 90, h - 80

    def px(v):
        return left + (math.log10(v) - xmin) / (xmax - xmin) * pw

    def py(v):
        return bottom - (math.log10(v) - ymin) / (ymax - ymin) * ph

    out = [f'<text x="{x0 + w / 2}" y="{y0 + 18}" text-anchor="middle" font-size="14">{title}</text>',
           f'<rect x="{left}" y="{bottom - ph}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>']
    for d in range(int(ymin), int(ymax) + 1):
        yy = bottom - (d - ymin) / (ymax - ymin) * ph
        out.append(f'<line x1="{left}" y1="{yy}" x2="{left + pw}" y2="{yy}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4}" text-anchor="end" font-size="11">1e{d}</text>')
    xs = sorted({x for e in s for x, _ in s[e]})
    for x in xs:
        xx = px(x)
        out.append(f'<line x1="{xx}" y1="{bottom}" x2="{xx}" y2="{bottom - ph}" stroke="#eee"/>')
        out.append(f'<text x="{xx}" y="{bottom + 15}" text-anchor="middle" font-size="11">{x}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{bottom + 33}" text-anchor="middle" font-size="12">{xlabel}</text>')
    for i, engine in enumerate(e for e in ENGINES if e in s):
        color = COLORS[i % len(COLORS)]
        line = [(px(x), py(m[field])) for x, m in s[engine] if m.get(field, 0) > 0]
        if not line:
            continue
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in line)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>' for a, b in line]
        ly0 = bottom - ph + 14 + 15 * i
        out.append(f'<line x1="{left + 8}" y1="{ly0 - 4}" x2="{left + 28}" y2="{ly0 - 4}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{left + 32}" y="{ly0}" font-size="11">{engine}</text>')
    return out


def plot_svg(by_producers, by_size, out):
    """The four panels of plot() as a dependency-free SVG file."""
    w, h = 560, 380
    panels = [
        (by_producers, "msgs_per_s", "producers", "messages/s (ingest, 4 KiB)", 0, 0),
        (by_producers, "p99_us", "producers", "p99 latency, us (ingest, 4 KiB)", w, 0),
        (by_size, "MB_per_s", "message size, bytes", "MB/s (ingest, 64 producers)", 0, h),
        (by_size, "p99_us", "message size, bytes", "p99 latency, us (64 producers)", w, h),
    ]
    body = []
    for s, field, xlabel, title, x0, y0 in panels:
        body += svg_panel(s, field, xlabel, title, x0, y0, w, h)
    with open(out, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{2 * h}" '
                f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n')
        f.write("\n".join(body))
        f.write("\n</svg>\n")
    print(f"wrote {out}", file=sys.stderr)
    return True


def plot(med, out):
    by_producers = series(med, "ingest", size=4096)
    by_size = series(med, "ingest", producers=64)
    if out.endswith(".svg"):
        return plot_svg(by_producers, by_size, out)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (Debian: apt-get install python3-matplotlib); "
              "the series as text:", file=sys.stderr)
        for title, s, xname, y in (("ingest 4 KiB", by_producers, "producers", "msgs_per_s"),
                                   ("ingest 64 producers", by_size, "size", "MB_per_s")):
            print(f"# {title}: {y} and p99_us against {xname}")
            for engine in ENGINES:
                if engine in s:
                    pts = ", ".join(f"{x}: {m[y]:.0f} ({m['p99_us']:.0f} us)" for x, m in s[engine])
                    print(f"{engine:8} {pts}")
        return False
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    panels = [
        (axes[0][0], by_producers, "msgs_per_s", "producers", "messages/s (ingest, 4 KiB)"),
        (axes[0][1], by_producers, "p99_us", "producers", "p99 latency, us (ingest, 4 KiB)"),
        (axes[1][0], by_size, "MB_per_s", "message size, bytes", "MB/s (ingest, 64 producers)"),
        (axes[1][1], by_size, "p99_us", "message size, bytes", "p99 latency, us (64 producers)"),
    ]
    for ax, s, field, xlabel, title in panels:
        for engine in ENGINES:
            if engine not in s:
                continue
            xs = [x for x, m in s[engine] if field in m]
            ys = [m[field] for x, m in s[engine] if field in m]
            ax.plot(xs, ys, marker="o", label=engine)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}", file=sys.stderr)
    return True


def table(med):
    """Markdown: one row per engine and case (medians), ratios against rocksdb and raw."""
    order = ["ingest", "latency", "mixed"]
    cases = sorted({(w, sz, p) for (_, w, sz, p) in med},
                   key=lambda c: (order.index(c[0]) if c[0] in order else 9, c[1] == 0, c[1], c[2]))
    lines = ["| case | engine | msgs/s | MB/s | p50 us | p99 us | p99.9 us | fsyncs/s | "
             "B/fsync | CPU us/msg | × rocksdb msgs/s | p99 ÷ rocksdb | % raw MB/s | p50 ÷ raw | "
             "runs |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w, sz, p in cases:
        rocks = med.get(("rocksdb", w, sz, p))
        raw = med.get(("raw", w, sz, p))
        for engine in ENGINES:
            m = med.get((engine, w, sz, p))
            if m is None:
                continue
            size = "email" if sz == 0 else (f"{sz // 1024} KiB" if sz % 1024 == 0 else f"{sz} B")

            def ratio(base, field, fmt, scale=1.0):
                # The median of the ratios of runs paired in order (run i of this engine
                # against run i of the baseline: the same repetition of run_matrix.sh),
                # so that drift between repetitions cancels out.
                if base is None:
                    return "–"
                pairs = [(a[field], b[field]) for a, b in zip(m["runs"], base["runs"])
                         if b[field] > 0 and a[field] >= 0]
                if not pairs:
                    return "–"
                return fmt.format(scale * statistics.median(a / b for a, b in pairs))

            x_rocks = ratio(rocks, "msgs_per_s", "{:.2f}")
            p99_rocks = ratio(rocks, "p99_us", "{:.2f}")
            pct_raw = ratio(raw, "MB_per_s", "{:.0f}%", 100)
            p50_raw = ratio(raw, "p50_us", "{:.2f}")
            fs = "n/a" if m["fsyncs_per_s"] < 0 else f"{m['fsyncs_per_s']:.0f}"
            bpf = "n/a" if m["bytes_per_fsync"] < 0 else f"{m['bytes_per_fsync']:.0f}"
            lines.append(
                f"| {w} {size} ×{p} | {engine} | {m['msgs_per_s']:.0f} | {m['MB_per_s']:.1f} | "
                f"{m['p50_us']:.0f} | {m['p99_us']:.0f} | {m['p999_us']:.0f} | {fs} | {bpf} | "
                f"{m['cpu_us_per_msg']:.0f} | {x_rocks} | {p99_rocks} | {pct_raw} | {p50_raw} | "
                f"{m['n']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="JSON-lines files ('-' for stdin)")
    ap.add_argument("--run", metavar="DIR", help="run bench/run_matrix.sh DIR first")
    ap.add_argument("--mode", default="sweep", help="run_matrix.sh mode for --run")
    ap.add_argument("--out", default="spool-bench.png", help="image to write")
    ap.add_argument("--table", action="store_true", help="print the median table")
    args = ap.parse_args()
    paths = list(args.files)
    if args.run:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_matrix.sh")
        result = subprocess.run(["bash", script, args.run, args.mode], check=True,
                                stdout=subprocess.PIPE, text=True)
        saved = "spool-bench-results.jsonl"
        with open(saved, "w") as f:
            f.write(result.stdout)
        print(f"wrote {saved}", file=sys.stderr)
        paths.append(saved)
    if not paths:
        ap.error("give JSON-lines files or --run DIR")
    med = medians(load(paths))
    if not med:
        sys.exit("plot.py: no spool-bench JSON lines in the input")
    if args.table:
        print(table(med))
    else:
        plot(med, args.out)


if __name__ == "__main__":
    main()
