"""The report's ``index.html``: one static page, relative links only, no script, opens offline."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from training.reports.analysis import Episode, ForecastQuality, StringsTimeline

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; color: #222; padding: 0 1em; }
h1 { font-weight: 600; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee;
text-align: left; font-size: 14px; } img { max-width: 100%; } .note { color: #666; font-size: 13px; }
.tension { color: #d62828; } .release { color: #277da1; } .held { color: #777; }
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_index(path: Path, summary: dict[str, Any], tl: StringsTimeline, episodes: list[Episode],
                fq: ForecastQuality | None) -> Path:
    """Write ``index.html`` next to the pictures and the video (see :mod:`training.reports.build`)."""
    s = summary
    present = s["dancers_present"]
    swaps = "n/a (not cleaned here)" if s["swaps_corrected"] is None else s["swaps_corrected"]
    facts = _table(["", ""], [
        ["input", f"{s['input']['kind']}: {s['input']['path']}"],
        ["duration", f"{s['duration_s']:.1f} s ({s['frames']} frames at {s['fps']:g} fps)"],
        ["dancers present", f"both {100 * present['both']:.1f} % of frames (A {100 * present['A']:.1f} %, "
                            f"B {100 * present['B']:.1f} %)"],
        ["swaps corrected", swaps],
        ["strings from", f"{tl.source}: {tl.note}"],
        ["strong", f"strength ≥ {tl.threshold:g}"],
    ])
    top = _table(["string", "time share strong", "mean strength", "peak", "type", "lag (s, + = A leads)"], [
        [t["pair"], f"{100 * t['time_share']:.1f} %", f"{t['mean_strength']:.2f}", f"{t['peak_strength']:.2f}",
         t["type"], "–" if t["lag_s"] is None else f"{t['lag_s']:+.2f}"] for t in s["top_strings"]])
    planted = ""
    if s.get("planted_strings"):
        names = _e(", ".join(s["planted_strings"]))
        planted = f"<p class='note'>This clip is synthetic; its planted strings: {names}.</p>"
    eps = "".join(
        f"<li><span class='{e.kind}'>{_e(e.kind)}</span> {_e(e.as_dict()['pair'])}: {e.start_s:.1f}–{e.end_s:.1f} s, "
        f"{e.mean_rate_mps:+.2f} m/s at {e.distance_m:.2f} m</li>" for e in episodes[:10]
    ) or "<li>no strong string</li>"
    hubs = _table(["joint", "share of time with a strong string"],
                  [[h["joint"], f"{100 * h['share']:.1f} %"] for h in s["hubs"]])
    if fq is not None:
        means = fq.means()
        forecast = ("<img src='forecast.png' alt='forecast error over time'>" + _table(
            ["horizon", "STGA-Net MPJPE", "as sent live (gated)", "hold last frame", "constant velocity"],
            [[f"{h} ms", *(f"{m[k]} mm" for k in ("stga_mm", "gated_mm", "hold_last_mm", "constant_velocity_mm"))]
             for h, m in means.items()])
            + f"<p class='note'>{_e(fq.note)}. Where the solid lines rise the movement became hard to predict.</p>")
    else:
        forecast = f"<p>No forecaster: {_e(s['models']['missing'].get('stga', 'not loaded'))}.</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invisible Strings — rehearsal report</title>
<style>{_STYLE}</style></head><body>
<h1>Rehearsal report</h1>
{facts}
<h2>1. The strings on the duet</h2>
<p><a href="strings.mp4">strings.mp4</a> (MPEG-4 part 2; open it in VLC or QuickTime — browsers do not play it).
Dancer A orange, dancer B teal; a string's colour is its type ({_e(', '.join(f'{v}' for v in tl.type_names.values()))}),
its thickness its strength; strong strings are thick with a white core. Four stills:</p>
<img src="stills.png" alt="four frames of the video">
<h2>2. Strings over time</h2>
<img src="heatmap.png" alt="heat map of the strongest strings over time">
<img src="timeline.png" alt="number of strong strings, total strength, distance">
<h3>Top strings</h3>{top}{planted}
<h2>3. Hubs</h2>
<img src="hubs.png" alt="body map with hub scores">{hubs}
<h2>4. Tension and release</h2>
<p>While a string is strong: do its two joints move apart (<span class="tension">tension</span>, the
"elastic band" in opposition) or together (<span class="release">release</span>)?</p>
<img src="tension.png" alt="distance between the joints of the top strings"><ol>{eps}</ol>
<h2>5. Forecast quality</h2>{forecast}
<h2>6. Summary</h2><p>All of the above as data: <a href="summary.json">summary.json</a>.</p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
