// RecSAE Explorer: draws the plotly figures the server built, and swaps the latent list's
// results in place when its filters change (the page still works without JavaScript).
"use strict";

// Signed-in pages carry the session's CSRF token in <meta name="csrf-token">; every same-origin
// POST/PUT/PATCH/DELETE made with fetch() sends it as X-CSRF-Token (backend/auth.py).
(() => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) return;
  const plainFetch = window.fetch.bind(window);
  window.fetch = (resource, init = {}) => {
    const method = (init.method || "GET").toUpperCase();
    const url = new URL(resource instanceof Request ? resource.url : resource, window.location.href);
    if (method !== "GET" && method !== "HEAD" && url.origin === window.location.origin) {
      const headers = new Headers(init.headers || {});
      headers.set("X-CSRF-Token", meta.content);
      init = { ...init, headers };
    }
    return plainFetch(resource, init);
  };
})();

function drawFigures(root) {
  if (typeof Plotly === "undefined") return;
  root.querySelectorAll(".plot[data-figure]").forEach((div) => {
    const data = document.getElementById(div.dataset.figure);
    if (!data || div.dataset.drawn) return;
    const fig = JSON.parse(data.textContent);
    div.dataset.drawn = "1";
    Plotly.newPlot(div, fig.data || [], fig.layout || {}, {
      displaylogo: false,
      responsive: true,
      modeBarButtonsToRemove: ["select2d", "lasso2d"],
    });
  });
}

function fragmentUrl(url) {
  const u = new URL(url, window.location.href);
  u.searchParams.set("_fragment", "1");
  return u;
}

// The URL is the one place the filter state lives: every change (form, column header, pager)
// builds a URL, the form is set from it, and it is pushed to the history, so Back undoes it.
let latestSwap = 0;

async function swapResults(form, url, push = true) {
  const target = document.getElementById(form.dataset.target);
  if (!target) return;
  const mine = ++latestSwap;
  syncForm(form, url);
  if (push && new URL(url, window.location.href).href !== window.location.href) {
    history.pushState({ filters: true }, "", url);
  }
  const response = await fetch(fragmentUrl(url), { headers: { Accept: "text/html" } });
  const text = await response.text();
  if (mine !== latestSwap) return; // a later change has been asked for: its answer wins
  if (!response.ok && !text.includes('class="error"')) {
    target.textContent = "";
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = `Could not load results (${response.status}).`;
    target.appendChild(p);
    return;
  }
  target.innerHTML = text; // the results, or the error page's fragment saying what was wrong
}

// Sets every field of the form from the URL's query (a missing one: its first option, or empty).
function syncForm(form, url) {
  const params = new URL(url, window.location.href).searchParams;
  for (const el of form.elements) {
    if (!el.name || el.type === "submit") continue;
    if (params.has(el.name)) el.value = params.get(el.name);
    else if (el.tagName === "SELECT") el.selectedIndex = 0;
    else if (el.type !== "hidden") el.value = "";
    if (el.tagName === "SELECT" && el.selectedIndex < 0) el.selectedIndex = 0;
  }
}

function formUrl(form) {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value !== "") params.append(key, value);
  return `${form.action.split("?")[0]}?${params}`;
}

function wireFilters() {
  const form = document.getElementById("latent-filters");
  if (!form) return;
  let timer = null;
  const refresh = () => { clearTimeout(timer); swapResults(form, formUrl(form)); };
  form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  form.addEventListener("change", refresh);
  form.addEventListener("input", (e) => {
    if (e.target.name !== "q") return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
  // Sort headers and pager links inside the results also swap in place.
  document.getElementById(form.dataset.target).addEventListener("click", (e) => {
    const a = e.target.closest("a.sort, nav.pager a");
    if (!a) return;
    e.preventDefault();
    clearTimeout(timer);
    swapResults(form, a.href);
  });
  // Back and Forward: the results and the form follow the URL.
  window.addEventListener("popstate", () => {
    if (window.location.pathname !== new URL(form.action).pathname) return;
    clearTimeout(timer);
    swapResults(form, window.location.href, false);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawFigures(document);
  wireFilters();
});
