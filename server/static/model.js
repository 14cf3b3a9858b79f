/* The model page: the stage-history timeline (SVG lanes, one per version) and Approve / Reject on pending
   requests (POST to the API with the X-CSRF-Token header; the server checks the approve permission). */
"use strict";
(() => {
  const { el, api, json, say, live } = ML;
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, ...kids) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const STAGE = { development: "#8a94a6", staging: "#d08a2f", production: "#2a9d5c", deprecated: "#b07cc6", archived: "#5d6d7e", deleted: "#b42318" };

  function timeline() {
    const box = document.getElementById("timeline");
    const rows = json("timeline-data") || [];
    if (!box || !rows.length) { if (box) box.append(el("p", { class: "empty", text: "No stage history." })); return; }
    const now = Date.now();
    const t = rows.flatMap(r => [Date.parse(r.from), r.to ? Date.parse(r.to) : now]).filter(isFinite);
    const lo = Math.min(...t), hi = Math.max(now, ...t);
    const versions = [...new Set(rows.map(r => r.version))].sort((a, b) => b - a);
    const W = Math.max(480, box.clientWidth || 800), lane = 26, padL = 56, H = versions.length * lane + 30;
    const X = v => padL + (v - lo) / Math.max(1, hi - lo) * (W - padL - 10);
    const out = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Stage history per version over time" });
    versions.forEach((v, i) => out.append(svg("text", { x: 4, y: i * lane + 17, class: "tick" }, `v${v}`)));
    for (const r of rows) {
      const i = versions.indexOf(r.version), a = X(Date.parse(r.from)), b = X(r.to ? Date.parse(r.to) : now);
      const w = Math.max(3, b - a);
      out.append(svg("rect", { x: a, y: i * lane + 4, width: w, height: lane - 8, rx: 3, fill: STAGE[r.stage] || "#999" },
        svg("title", {}, `v${r.version} ${r.stage}: ${r.from} → ${r.to || "now"}`)));
      if (w > 60) out.append(svg("text", { x: a + 4, y: i * lane + 17, class: "bar-label" }, r.stage));
    }
    out.append(svg("text", { x: padL, y: H - 6, class: "tick" }, new Date(lo).toISOString().slice(0, 16).replace("T", " ")),
               svg("text", { x: W - 10, y: H - 6, class: "tick", "text-anchor": "end" }, "now"));
    box.replaceChildren(out, el("p", { class: "legend" }, Object.entries(STAGE).map(([s, c]) =>
      el("span", { class: "legend-item" }, el("span", { class: "swatch", style: `background:${c}` }), s))));
  }

  async function stillPending(id) {  // re-read this page: is the request still listed as pending?
    const r = await fetch(location.href, { credentials: "same-origin" });
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    return !!doc.querySelector(`#pending tr[data-request-id="${CSS.escape(id)}"]`);
  }

  async function decide(btn, verdict) {
    const row = btn.closest("tr"), id = btn.dataset.requestId, model = btn.dataset.model;
    const out = row.querySelector(".outcome"), comment = row.querySelector(".comment").value.trim() || null;
    row.querySelectorAll("button").forEach(b => { b.disabled = true; });
    out.textContent = verdict === "approve" ? "Approving…" : "Rejecting…";
    try {
      await api(`/api/v1/requests/${encodeURIComponent(id)}/${verdict}`, { method: "POST", body: { model, comment } });
      out.textContent = (verdict === "approve" ? "Approval" : "Rejection") + " recorded; waiting for the decision…";
      row.dataset.verdict = verdict;
      let stop = null;
      const done = async () => {  // the decision event may precede its projection: re-check, backing off
        for (let i = 1; i <= 15; i++) {
          if (!(await stillPending(id))) { if (stop) stop(); location.reload(); return; }
          await new Promise(r => setTimeout(r, 150 * i));
        }
      };
      stop = live(`/api/v1/stream?model=${encodeURIComponent(model)}`, ["decision"],
                  (t, d) => { if (!d || d.request_id === id) done(); }, done, 1500, done);
    } catch (e) {
      out.textContent = e.message;
      out.className = "outcome error";
      row.querySelectorAll("button").forEach(b => { b.disabled = false; });
    }
  }

  document.querySelectorAll("#pending button.approve").forEach(b => b.addEventListener("click", () => decide(b, "approve")));
  document.querySelectorAll("#pending button.reject").forEach(b => b.addEventListener("click", () => decide(b, "reject")));
  timeline();
})();
