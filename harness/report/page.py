"""The HTML shell every report page shares: inline CSS and JS, nothing fetched from anywhere.

The script sets `data-rendered="ok"` on <html> once it ran, and an error hook installed first
records any script error in `data-script-errors`, which the headless-Chromium test reads.
"""

from __future__ import annotations

from harness.report.svg import esc

CSS = """
:root { --fg:#212529; --muted:#6c757d; --line:#dee2e6; --bg:#f8f9fa; --pass:#2b8a3e; --fail:#c92a2a;
  --unknown:#868e96; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg); background:var(--bg); }
main { max-width:1400px; margin:0 auto; padding:20px 24px 48px; }
h1 { font-size:22px; margin:0 0 4px; } h2 { font-size:17px; margin:0 0 10px; }
.banner { display:flex; align-items:center; gap:16px; padding:16px 24px; color:#fff; }
.banner.pass { background:var(--pass); } .banner.fail { background:var(--fail); }
.banner.unknown { background:var(--unknown); }
.banner .verdict { font-size:28px; font-weight:700; letter-spacing:.04em; }
.banner .meta { opacity:.92; }
.banner .verdict-box { display:flex; flex-direction:column; align-items:flex-start; gap:6px; }
.banner.caveat { border-left:14px solid #f59f00;
  background-image:repeating-linear-gradient(135deg, rgba(0,0,0,.12) 0 14px, transparent 14px 28px); }
.banner .flags { display:flex; flex-wrap:wrap; gap:4px; max-width:220px; }
.flag { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:700;
  white-space:nowrap; background:#fff; color:#212529; }
.flag.skipped, .flag.untested { background:#f59f00; color:#212529; }
.flag.strict-fail { background:#fff; color:var(--fail); border:2px solid var(--fail); }
.banner-list { margin-top:8px; font-size:13px; } .banner-list ul { margin:2px 0 0; padding-left:20px; }
.banner-list.skipped b { background:#f59f00; color:#212529; padding:0 6px; border-radius:3px; }
section.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:16px 18px;
  margin-top:18px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.row-fail { background:#fff5f5; } tr.row-untested { background:#fff4e6; box-shadow:inset 4px 0 #f59f00; }
.pill { display:inline-block; padding:1px 9px; border-radius:10px; color:#fff; font-weight:600;
  font-size:12px; text-transform:uppercase; white-space:nowrap; }
.pill.pass { background:var(--pass); } .pill.fail { background:var(--fail); }
.pill.unknown { background:var(--unknown); }
.pill.missed { background:var(--fail); } .pill.detected { background:var(--pass); }
.pill.false-alarm { background:#e8590c; } .pill.no-fault-applied { background:#f59f00; color:#212529; }
code, pre { font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
pre { background:#f1f3f5; padding:8px 10px; border-radius:6px; overflow:auto; max-height:420px;
  margin:6px 0; }
.bounds code { background:#f1f3f5; padding:0 4px; border-radius:3px; margin-right:4px; white-space:nowrap; }
.rerun { display:flex; gap:8px; align-items:center; flex-wrap:wrap; }
.rerun code { background:#212529; color:#f8f9fa; padding:6px 10px; border-radius:6px; }
button { font:inherit; font-size:12px; padding:4px 10px; border:1px solid var(--line); border-radius:6px;
  background:#fff; cursor:pointer; }
.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; }
.kv dt { color:var(--muted); } .kv dd { margin:0; }
.muted { color:var(--muted); }
.caption { color:var(--muted); font-size:12px; margin:4px 0 0; }
.legend { display:flex; flex-wrap:wrap; gap:4px 14px; font-size:12px; margin:6px 0 0; }
.legend span { display:inline-flex; align-items:center; gap:5px; }
.sw { display:inline-block; width:14px; height:9px; border-radius:2px; }
.sw.tick { width:3px; height:12px; } .sw.dot { width:8px; height:8px; border-radius:50%; }
.sw.line { height:3px; } .sw.up, .sw.down, .sw.cross, .sw.square { width:9px; height:9px; }
.sw.ring { width:10px; height:10px; border-radius:50%; background:none !important;
  border:2px solid #c92a2a; }
.sw.square { background:none !important; border:2px solid #495057; border-radius:0; }
details { border:1px solid var(--line); border-radius:6px; padding:6px 10px; margin:8px 0; background:#fff; }
details summary { cursor:pointer; font-weight:600; }
details.fail { border-color:#ffa8a8; } details.fail summary { color:var(--fail); }
svg.plot { width:100%; height:auto; display:block; background:#fff; }
svg .lane { fill:#f1f3f5; } svg .lane-label { font-size:11px; fill:#343a40; }
svg .axis { stroke:#495057; stroke-width:1; } svg .grid { stroke:#e9ecef; stroke-width:1; }
svg .tick { font-size:10px; fill:#495057; } svg .axis-label { font-size:11px; fill:#6c757d; }
svg path.tick { stroke-width:1; fill:none; }
svg .fault-shade { fill-opacity:.15; } svg .fault-edge { stroke-width:1; stroke-dasharray:3 3; } svg .fault-label { font-size:11px; font-weight:600; }
svg .op { shape-rendering:crispEdges; } svg .op:hover { stroke:#000; stroke-width:1; }
svg .event-up path { fill:#2b8a3e; } svg .event-down path { fill:#a61e4d; }
svg .event-other path { fill:#343a40; }
svg .event-code { font-size:9px; fill:#a61e4d; }
svg .detection line { stroke:#c92a2a; stroke-width:1.2; stroke-dasharray:4 3; }
svg .detection text { font-size:11px; fill:#c92a2a; font-weight:600; }
svg .range { stroke-width:1; stroke-opacity:.55; fill:none; } svg .pt-fail { stroke-width:1.6; fill:none; }
svg .pt-info { fill:none; stroke-width:1.4; } svg .series { fill:none; stroke-width:1.4; stroke-opacity:.85; }
svg .evidence { fill:none; stroke:#c92a2a; stroke-width:2; }
svg .median-line { stroke:#868e96; stroke-dasharray:5 4; }
svg .cursor { stroke:#212529; stroke-width:.8; stroke-dasharray:2 2; pointer-events:none; }
svg .cursor-label { font-size:11px; fill:#212529; pointer-events:none; }
a { color:#1864ab; } td a { color:inherit; text-decoration:none; } td a:hover { text-decoration:underline; }
td a[href$='.html'], td a[href$='.json'] { color:#1864ab; text-decoration:underline; }
"""

# Installed before anything else so that an error anywhere on the page is recorded.
ERROR_HOOK = """
window.addEventListener('error', function (e) {
  var root = document.documentElement;
  var prev = root.getAttribute('data-script-errors');
  root.setAttribute('data-script-errors', (prev ? prev + ' | ' : '') + (e.message || 'error'));
});
"""

SCRIPT = """
(function () {
  function setupCursor(svg) {
    var x0 = parseFloat(svg.dataset.x0), x1 = parseFloat(svg.dataset.x1), t1 = parseFloat(svg.dataset.t1);
    var line = svg.querySelector('.cursor'), label = svg.querySelector('.cursor-label');
    if (!line || !label || !(x1 > x0) || !(t1 > 0)) return;
    svg.addEventListener('mousemove', function (ev) {
      var m = svg.getScreenCTM();
      if (!m) return;
      var x = (ev.clientX - m.e) / m.a;
      if (x < x0 || x > x1) {
        line.setAttribute('visibility', 'hidden'); label.setAttribute('visibility', 'hidden'); return;
      }
      var t = (x - x0) / (x1 - x0) * t1;
      line.setAttribute('x1', x); line.setAttribute('x2', x); line.setAttribute('visibility', 'visible');
      label.setAttribute('x', x + 4); label.textContent = t.toFixed(3) + ' s';
      label.setAttribute('visibility', 'visible');
    });
    svg.addEventListener('mouseleave', function () {
      line.setAttribute('visibility', 'hidden'); label.setAttribute('visibility', 'hidden');
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('svg[data-t1]'), setupCursor);
  Array.prototype.forEach.call(document.querySelectorAll('button[data-copy]'), function (btn) {
    btn.addEventListener('click', function () {
      var text = document.getElementById(btn.dataset.copy).textContent;
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { btn.textContent = 'copied'; });
      }
    });
  });
  var toggle = document.getElementById('only-failing');
  if (toggle) {
    toggle.addEventListener('change', function () {
      Array.prototype.forEach.call(document.querySelectorAll('tr[data-status]'), function (tr) {
        tr.hidden = toggle.checked && tr.dataset.status !== 'fail';
      });
    });
  }
  function openTarget() {
    var target = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    if (target && target.tagName === 'DETAILS') { target.open = true; }
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();
  document.documentElement.setAttribute('data-rendered', 'ok');
})();
"""


def page(title: str, banner: str, body: str) -> str:
    """A complete HTML document; `banner` and `body` are already-escaped HTML."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>"
        f"<script>{ERROR_HOOK}</script><style>{CSS}</style></head>"
        f"<body>{banner}<main>{body}</main><script>{SCRIPT}</script></body></html>\n"
    )


CROSS = "polygon(20% 0,50% 30%,80% 0,100% 20%,70% 50%,100% 80%,80% 100%,50% 70%,20% 100%,0 80%,30% 50%,0 20%)"


def legend_html(items: list[tuple[str, str, str]]) -> str:
    spans = []
    for label, colour, shape in items:
        style = f"background:{colour}" if shape != "square" else f"border-color:{colour}"
        if shape == "up":
            style = f"background:{colour};clip-path:polygon(50% 0,100% 100%,0 100%)"
        elif shape == "down":
            style = f"background:{colour};clip-path:polygon(0 0,100% 0,50% 100%)"
        elif shape == "cross":
            style = f"background:{colour};clip-path:{CROSS}"
        spans.append(f'<span><i class="sw {shape}" style="{style}"></i>{esc(label)}</span>')
    return f'<div class="legend">{"".join(spans)}</div>'


def pill(status: str) -> str:
    return f'<span class="pill {esc(status)}">{esc(status.replace("-", " "))}</span>'
