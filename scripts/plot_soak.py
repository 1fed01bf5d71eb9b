#!/usr/bin/env python3
"""Draws a soak run (loadtest soak --out FILE) as an SVG: hub RSS and the
p99 cause-to-watcher latency of each sample period, over the run's minutes.

The last soak line of FILE is drawn (the last complete one if there is one).
RSS carries the warm-up mark and the +5% goal over the RSS at warm-up end;
p99 is drawn with each period's max. Plain SVG, no dependency:
`python3 scripts/plot_soak.py bench.jsonl docs/soak.svg`.
"""
import json
import sys


def pick(rows):
    soaks = [r for r in rows if r.get("scenario") == "soak"]
    if not soaks:
        sys.exit("no soak run in the input")
    whole = [r for r in soaks if not r.get("partial")]
    return (whole or soaks)[-1]


def panel(x0, title, series, marks, unit, w=420, h=260):
    """series: [(label, colour, [(minute, value)])]; marks: [(kind, value, label)]
    with kind "x" (a vertical line at a minute) or "y" (a horizontal line)."""
    out = [f'<g transform="translate({x0},0)">',
           f'<text x="{w/2}" y="18" text-anchor="middle" font-size="13">{title}</text>']
    points = [p for _, _, pts in series for p in pts]
    if not points:
        return out + ["</g>"]
    left, top, pw, ph = 55, 30, w - 75, h - 75
    xmax = max(p[0] for p in points) or 1
    ys = [p[1] for p in points] + [v for k, v, _ in marks if k == "y"]
    ymax = max(ys) * 1.15 or 1

    def sx(x):
        return left + x / xmax * pw

    def sy(y):
        return top + ph - y / ymax * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for i in range(5):
        y = ymax * i / 4
        out.append(f'<text x="{left-4}" y="{sy(y)+3:.1f}" text-anchor="end" font-size="10">{y:.3g}</text>')
    step = max(1, -(-int(xmax) // 6))
    for x in range(0, int(xmax) + 1, step):
        out.append(f'<text x="{sx(x):.1f}" y="{top+ph+14}" text-anchor="middle" font-size="10">{x}</text>')
    out.append(f'<text x="{left+pw/2}" y="{top+ph+30}" text-anchor="middle" font-size="11">minutes</text>')
    out.append(f'<text x="14" y="{top+ph/2}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 14 {top+ph/2})">{unit}</text>')
    for kind, v, label in marks:
        if kind == "x":
            out.append(f'<line x1="{sx(v):.1f}" y1="{top}" x2="{sx(v):.1f}" y2="{top+ph}" stroke="#888" stroke-dasharray="3 3"/>')
            out.append(f'<text x="{sx(v)+3:.1f}" y="{top+10}" font-size="10" fill="#666">{label}</text>')
        else:
            out.append(f'<line x1="{left}" y1="{sy(v):.1f}" x2="{left+pw}" y2="{sy(v):.1f}" stroke="#c33" stroke-dasharray="4 3"/>')
            out.append(f'<text x="{left+pw-2}" y="{sy(v)-3:.1f}" text-anchor="end" font-size="10" fill="#c33">{label}</text>')
    for n, (label, colour, pts) in enumerate(series):
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>')
        out.append(f'<text x="{left+8}" y="{top+ph-8-14*n}" font-size="10" fill="{colour}">{label}</text>')
    out.append("</g>")
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    run = pick([json.loads(l) for l in open(src) if l.strip()])
    samples = run["samples"]
    minute = [s["t_secs"] / 60 for s in samples]
    rss = [(m, s["rss_kib"] / 1024) for m, s in zip(minute, samples)]
    p99 = [(m, s["latency_ms"]["p99"]) for m, s in zip(minute, samples)]
    top = [(m, s["latency_ms"]["max"]) for m, s in zip(minute, samples)]
    warm_min = run["warmup_secs"] / 60
    marks = [("x", warm_min, "warm-up end")]
    if run.get("rss_warmup_kib"):
        marks.append(("y", run["rss_warmup_kib"] / 1024 * 1.05, "+5% over warm-up"))
    growth = run.get("rss_growth_pct")
    title = f'hub RSS, {run["tabs"]:,} tabs' + (f" (growth {growth:+.2f}%)" if growth is not None else "")
    leaked = run.get("tabs_leaked")
    p99_title = f'cause → watcher per {run["sample_secs"]} s (leaked tabs: {leaked:g})'
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="840" height="270" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>']
    svg += panel(0, title, [("RSS", "#2a6", rss)], marks, "MiB")
    svg += panel(420, p99_title, [("max", "#aaa", top), ("p99", "#26a", p99)],
                 [("x", warm_min, "warm-up end")], "ms")
    svg.append("</svg>")
    open(dst, "w").write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
