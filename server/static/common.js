/* modelog UI helpers: DOM built with createElement/textContent only (never innerHTML with data),
   JSON API calls with the session cookie and, on writes, the X-CSRF-Token header. */
"use strict";
const ML = (() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status; this.problem = problem;
    }
  }

  async function api(path, opts = {}) {
    const init = { method: opts.method || "GET", credentials: "same-origin", headers: { Accept: "application/json" } };
    if (init.method !== "GET") {
      init.headers["X-CSRF-Token"] = csrf();
      if (opts.body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(opts.body); }
    }
    const r = await fetch(path, init);
    const ct = r.headers.get("content-type") || "";
    const body = ct.includes("json") ? await r.json() : null;
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
    if (!r.ok) throw new ApiError(r.status, body);
    return body;
  }

  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v === null || v === undefined || v === "") continue;
      if (Array.isArray(v)) v.forEach(x => u.append(k, x)); else u.append(k, v);
    }
    return u.toString();
  }

  function num(v) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e6)) ? v.toExponential(3) : String(+v.toPrecision(5));
  }

  function when(v) {
    if (!v) return "";
    const d = new Date(v);
    if (isNaN(d)) return String(v);
    return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function duration(s) {
    if (s === null || s === undefined) return "";
    s = Number(s);
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; n = Number(n);
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }

  function say(text, kind) {  // the page's live region
    const s = document.getElementById("status-line");
    if (!s) return;
    s.textContent = text || "";
    s.className = kind === "error" ? "error" : "hint";
  }

  function json(id) {
    const n = document.getElementById(id);
    return n ? JSON.parse(n.textContent) : null;
  }

  const selection = {  // runs picked for comparison, kept across pages of this tab
    key: "modelog.compare",
    get() { try { return JSON.parse(sessionStorage.getItem(this.key)) || []; } catch (e) { return []; } },
    set(ids) { sessionStorage.setItem(this.key, JSON.stringify(ids.slice(0, 50))); },
  };

  /* Server-sent events with a polling fallback: onEvent(type, data) for each event; when the stream is
     unavailable (older server, proxy), poll() every `every` ms instead. Returns a stop function. */
  function live(url, types, onEvent, poll, every = 5000, onOpen = null) {
    let es = null, timer = null, opened = false, stopped = false;
    const startPolling = () => { if (!timer && poll && !stopped) timer = setInterval(poll, every); };
    try {
      es = new EventSource(url, { withCredentials: true });
      es.onopen = () => { opened = true; document.body.dataset.live = "sse"; if (onOpen) onOpen(); };
      for (const t of types) es.addEventListener(t, ev => {
        let data = null; try { data = JSON.parse(ev.data); } catch (e) { data = ev.data; }
        onEvent(t, data);
      });
      es.onerror = () => {
        if (!opened || es.readyState === EventSource.CLOSED) { es.close(); document.body.dataset.live = "poll"; startPolling(); }
      };
    } catch (e) { startPolling(); }
    return () => { stopped = true; if (es) es.close(); if (timer) clearInterval(timer); };
  }

  return { el, api, qs, num, when, duration, bytes, say, json, selection, live, ApiError, csrf };
})();
