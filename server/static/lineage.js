/* The lineage graph: nodes in columns by distance (upstream left, downstream right), edges as curves.
   Each node is an SVG link (keyboard-focusable) to that entity's own lineage; its page is linked in the tooltip row. */
"use strict";
(() => {
  const { el, json } = ML;
  const g = json("graph-data");
  const box = document.getElementById("graph");
  if (!g || !box) return;
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, ...kids) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const KIND = { run: "#2f5fd0", dataset: "#2a9d5c", model: "#d08a2f", deployment: "#9b4dca", artifact: "#5d6d7e" };
  const layers = [...new Set(g.nodes.map(n => n.layer))].sort((a, b) => a - b);
  const cols = new Map(layers.map(l => [l, g.nodes.filter(n => n.layer === l).sort((a, b) => a.id.localeCompare(b.id))]));
  const NW = 220, NH = 34, GX = 90, GY = 14, pad = 16;
  const tallest = Math.max(...[...cols.values()].map(c => c.length));
  const W = pad * 2 + layers.length * NW + (layers.length - 1) * GX, H = pad * 2 + tallest * (NH + GY);
  const pos = new Map();
  layers.forEach((l, i) => {
    const col = cols.get(l), top = pad + (H - pad * 2 - col.length * (NH + GY)) / 2;
    col.forEach((n, j) => pos.set(n.id, { x: pad + i * (NW + GX), y: top + j * (NH + GY) }));
  });
  const out = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "group", "aria-label": `Lineage graph of ${g.root}` });
  out.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a94a6" }))));
  for (const e of g.edges) {
    const a = pos.get(e.src), b = pos.get(e.dst);
    if (!a || !b) continue;
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    out.append(svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge", "marker-end": "url(#arrow)" },
      svg("title", {}, `${e.src} ${e.relation} ${e.dst}`)));
    out.append(svg("text", { x: mx, y: (y1 + y2) / 2 - 3, class: "edge-label", "text-anchor": "middle" }, e.relation));
  }
  const short = s => s.length > 28 ? s.slice(0, 13) + "…" + s.slice(-13) : s;
  for (const n of g.nodes) {
    const p = pos.get(n.id);
    const a = svg("a", { href: "/lineage?node=" + encodeURIComponent(n.id), class: "node" + (n.id === g.root ? " root" : ""),
                         "data-node": n.id, "aria-label": `${n.kind} ${n.id}` },
      svg("title", {}, n.id),
      svg("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 6, fill: "#fff", stroke: KIND[n.kind] || "#999", "stroke-width": n.id === g.root ? 3 : 1.5 }),
      svg("text", { x: p.x + 8, y: p.y + 13, class: "node-kind", fill: KIND[n.kind] || "#666" }, n.kind),
      svg("text", { x: p.x + 8, y: p.y + 27, class: "node-id" }, short(n.id.replace(/^[a-z]+:/, ""))));
    out.append(a);
  }
  box.replaceChildren(out);
  // the root's own page, when it has one
  const [kind, rest] = [g.root.split(":")[0], g.root.slice(g.root.indexOf(":") + 1)];
  const page = kind === "run" ? `/runs/${encodeURIComponent(rest)}` : (kind === "model" || kind === "deployment")
    ? `/models/${encodeURIComponent(rest.split("/")[0])}` : null;
  if (page) box.after(el("p", {}, el("a", { href: page, text: `Open ${kind} page` })));
})();
