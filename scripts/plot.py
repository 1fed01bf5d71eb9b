#!/usr/bin/env python3
"""Draws docs/scaling.svg from loadtest JSON lines (loadtest --out FILE).

How cost grows with tabs: RSS per idle tab (idle runs), hub CPU per activity
frame (activity runs), p99 cause-to-delivery latency (fanout runs) and RSS
per tab per hub process (scaleout runs, plotted at their total tab count).
Plain SVG, no dependency: `python3 scripts/plot.py bench.jsonl docs/scaling.svg`.
"""
import json
import sys


def series(rows):
    rss, cpu, p99 = {}, {}, {}
    for r in rows:
        if r.get("partial"):
            continue
        s = r["scenario"]
        if s == "idle" and r.get("teams_of", 0) > 0:
            rss[r["tabs"]] = r["rss_per_tab_kib"]
        elif s == "scaleout":
            rss[r["tabs"]] = max(r["rss_per_tab_kib"])
        elif s == "activity":
            cpu[r["tabs"]] = r["hub_cpu_us_per_frame"]
        elif s == "fanout":
            p99[r["directory"]] = r["latency_ms"]["p99"]
    return [
        ("RSS per idle tab (KiB)", sorted(rss.items()), 6.0),
        ("hub CPU per activity frame (µs)", sorted(cpu.items()), 5.0),
        ("p99 transition → dashboard (ms)", sorted(p99.items()), 20.0),
    ]


def panel(x0, title, points, target, w=300, h=220):
    out = [f'<g transform="translate({x0},0)">',
           f'<text x="{w/2}" y="18" text-anchor="middle" font-size="13">{title}</text>']
    if not points:
        return out + ["</g>"]
    left, top, pw, ph = 45, 30, w - 60, h - 70
    xs = [p[0] for p in points]
    ymax = max([p[1] for p in points] + [target]) * 1.15
    xmin, xmax = min(xs), max(xs)
    span = (xmax - xmin) or 1

    def sx(x):
        return left + (x - xmin) / span * pw

    def sy(y):
        return top + ph - y / ymax * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    ty = sy(target)
    out.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{left+pw}" y2="{ty:.1f}" stroke="#c33" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{left+pw-2}" y="{ty-3:.1f}" text-anchor="end" font-size="10" fill="#c33">target {target:g}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))
    out.append(f'<path d="{path}" fill="none" stroke="#2a6" stroke-width="2"/>')
    for x, y in points:
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#2a6"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{sy(y)-6:.1f}" text-anchor="middle" font-size="10">{y:.2f}</text>')
        out.append(f'<text x="{sx(x):.1f}" y="{top+ph+14}" text-anchor="middle" font-size="10">{x//1000}k</text>')
    out.append(f'<text x="{left+pw/2}" y="{top+ph+30}" text-anchor="middle" font-size="11">tabs (users for latency)</text>')
    out.append("</g>")
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    rows = [json.loads(l) for l in open(src) if l.strip()]
    panels = series(rows)
    w = 300 * len(panels)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="230" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>']
    for i, (title, points, target) in enumerate(panels):
        svg += panel(i * 300, title, points, target)
    svg.append("</svg>")
    open(dst, "w").write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
