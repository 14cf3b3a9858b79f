/* Monitoring: the alerts table follows the log — on an `alert` event (GET /api/v1/stream) the page's own
   server-rendered, escaped alerts section is fetched again and swapped in. */
"use strict";
(() => {
  const { live, qs } = ML;
  const params = new URLSearchParams(location.search);
  async function swap() {  // true when the section changed
    const r = await fetch(location.href, { credentials: "same-origin" });
    if (!r.ok) return false;
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const fresh = doc.getElementById("alerts-section"), here = document.getElementById("alerts-section");
    if (!fresh || !here || fresh.textContent === here.textContent) return false;
    here.replaceWith(document.importNode(fresh, true));
    return true;
  }
  // an event comes from the log, maybe before the views hold it: try again, backing off, until the page changes
  async function onAlert() { for (let i = 1; i <= 15; i++) { if (await swap()) return; await new Promise(r => setTimeout(r, 150 * i)); } }
  live("/api/v1/stream?" + qs({ model: params.get("model") }), ["alert"], onAlert, swap, 3000);
  const s = document.getElementById("live-state");
  if (s) s.textContent = "live: alerts appear as they are raised";
})();
