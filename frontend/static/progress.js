// The home page follows the pipelines (docs/architecture.md, progress): while one is queued or
// running it polls the page's JSON twin every 2 s and, when a run's stage, state or published
// version changes, swaps in the page's fragment (?_fragment=1: the same template); the elapsed
// times tick in between. Without JavaScript a reload shows the same.
"use strict";

(() => {
  const POLL_MS = 2000;
  const loaded = performance.now();
  let last = null;

  const live = () => document.getElementById("runs-live");
  const active = () => live()?.querySelector('[data-state="running"], [data-state="queued"]');

  function duration(s) {
    if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
    const m = Math.floor(Math.round(s) / 60);
    if (m < 60) return `${m} min ${Math.round(s) % 60} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function tick() {
    const since = (performance.now() - loaded) / 1000;
    for (const el of document.querySelectorAll("#runs-live [data-elapsed]")) {
      const base = Number(el.dataset.elapsed) + since - Number(el.dataset.shownAt || 0);
      el.textContent = duration(base);
    }
  }

  function signature(data) {
    return JSON.stringify([
      data.runs.map((r) => [r.id, r.version]),
      data.progress.map((p) => [p.run_id, p.state, p.k, p.error, p.published_version]),
    ]);
  }

  async function swap() {
    const response = await fetch(`${location.pathname}?_fragment=1`, { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`${response.status}`);
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("runs-live");
    const here = live();
    if (!fresh || !here) return;
    here.innerHTML = fresh.innerHTML;
    const shownAt = String((performance.now() - loaded) / 1000);
    for (const el of here.querySelectorAll("[data-elapsed]")) el.dataset.shownAt = shownAt;
  }

  async function poll() {
    const here = live();
    if (!here) return;
    try {
      const response = await fetch(here.dataset.json, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`${response.status}`);
      const now = signature(await response.json());
      if (now !== last) {
        await swap();
        last = now;
      }
    } catch (err) {
      here.dataset.pollError = err.message; // the next poll tries again
    }
    if (active()) setTimeout(poll, POLL_MS);
  }

  if (!active()) return;
  setInterval(tick, 1000);
  setTimeout(poll, POLL_MS);
})();
