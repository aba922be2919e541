// RecSAE Explorer, user page: live steering. Every slider move rewrites the URL's query string
// (?_edits=latent:value,...&_mode=...) so the view can be shared, and swaps in the results block
// the server renders for it (?_fragment=1); stale answers are aborted, moves are debounced.
"use strict";

(function () {
  const panel = document.getElementById("steer-panel");
  if (!panel) return;
  const slidersBox = document.getElementById("sliders");
  const results = document.getElementById("steer-results");
  const shareLink = document.getElementById("share-link");
  const searchBox = document.getElementById("latent-search");
  const searchList = document.getElementById("latent-search-results");
  const pagePath = panel.dataset.page;
  const searchApi = panel.dataset.apiSearch;
  const user = panel.dataset.user;
  let pending = null; // AbortController of the request in flight
  let timer = null;

  const fmt = (v) => String(Number(Number(v).toPrecision(4)));

  function mode() {
    const checked = panel.querySelector("input[name=mode]:checked");
    return checked ? checked.value : "error_preserving";
  }

  function rows() {
    return Array.from(slidersBox.querySelectorAll(".slider-row"));
  }

  function editsQuery() {
    const parts = [];
    rows().forEach((row) => {
      const input = row.querySelector("input[type=range]");
      const value = Number(input.value);
      const edited = value !== Number(row.dataset.neutral);
      row.classList.toggle("edited", edited);
      if (edited) parts.push(`${row.dataset.latent}:${fmt(value)}`);
    });
    return parts.join(",");
  }

  function viewUrl() {
    const params = new URLSearchParams();
    const edits = editsQuery();
    if (edits) params.set("_edits", edits);
    if (mode() !== "error_preserving") params.set("_mode", mode());
    const q = params.toString();
    return q ? `${pagePath}?${q}` : pagePath;
  }

  async function refresh() {
    const url = viewUrl();
    window.history.replaceState(null, "", url);
    if (shareLink) shareLink.href = url;
    if (pending) pending.abort();
    const controller = new AbortController();
    pending = controller;
    results.classList.add("busy");
    const sep = url.includes("?") ? "&" : "?";
    try {
      const response = await fetch(`${url}${sep}_fragment=1`, {
        headers: { Accept: "text/html" },
        signal: controller.signal,
      });
      const body = await response.text();
      if (controller !== pending) return;
      if (!response.ok) {
        let detail = body;
        try { detail = JSON.parse(body).detail; } catch (_) { /* HTML error page */ }
        showError(`Could not steer (${response.status}): ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
        return;
      }
      results.innerHTML = body;
    } catch (err) {
      if (err.name !== "AbortError") showError(`Could not steer: ${err.message}`);
    } finally {
      if (controller === pending) {
        pending = null;
        results.classList.remove("busy");
      }
    }
  }

  function showError(message) {
    let p = results.querySelector("p.error");
    if (!p) {
      p = document.createElement("p");
      p.className = "error";
      results.prepend(p);
    }
    p.textContent = message;
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay);
  }

  function bindRow(row) {
    const input = row.querySelector("input[type=range]");
    const label = row.querySelector(".val");
    const suffix = row.dataset.kind === "scale" ? "×" : "";
    input.addEventListener("input", () => {
      label.textContent = fmt(input.value) + suffix;
      schedule(60);
    });
    const remove = row.querySelector("button.remove");
    if (remove) remove.addEventListener("click", () => { row.remove(); schedule(0); });
  }

  function addRow(lat) {
    if (slidersBox.querySelector(`.slider-row[data-latent="${lat.latent}"]`)) return;
    const s = lat.slider;
    const row = document.createElement("div");
    row.className = "slider-row";
    row.dataset.latent = lat.latent;
    row.dataset.kind = s.kind;
    row.dataset.neutral = s.neutral;
    const info = document.createElement("div");
    const name = document.createElement("strong");
    name.textContent = `#${lat.latent} `;
    const concept = document.createElement("span");
    concept.className = "concept";
    concept.textContent = lat.tfidf_concept || lat.llm_concept || "—";
    const kind = document.createElement("div");
    kind.className = "kind";
    kind.textContent = `${s.kind} · activation ${fmt(lat.activation)}`;
    info.append(name, concept, kind);
    const input = document.createElement("input");
    input.type = "range";
    input.min = s.min; input.max = s.max; input.step = s.step; input.value = s.value;
    input.setAttribute("aria-label", `latent ${lat.latent} ${s.kind}`);
    const val = document.createElement("span");
    val.className = "val";
    val.textContent = fmt(s.value) + (s.kind === "scale" ? "×" : "");
    const remove = document.createElement("button");
    remove.type = "button"; remove.className = "remove"; remove.title = "remove this slider";
    remove.textContent = "×";
    row.append(info, input, val, remove);
    slidersBox.append(row);
    bindRow(row);
  }

  async function search() {
    const q = searchBox.value.trim();
    searchList.replaceChildren();
    if (!q) return;
    const response = await fetch(`${searchApi}?${new URLSearchParams({ q, user, limit: 15 })}`);
    if (!response.ok) {
      const li = document.createElement("li");
      li.className = "error";
      li.textContent = `search failed (${response.status})`;
      searchList.append(li);
      return;
    }
    const data = await response.json();
    if (!data.latents.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = `no latent's concept contains “${q}”`;
      searchList.append(li);
    }
    data.latents.forEach((lat) => {
      const li = document.createElement("li");
      const add = document.createElement("button");
      add.type = "button";
      add.textContent = "add";
      add.addEventListener("click", () => { addRow(lat); li.remove(); });
      const text = document.createElement("span");
      const conf = lat.tfidf_confidence == null ? "" : ` (${lat.tfidf_confidence.toFixed(2)})`;
      text.textContent = ` #${lat.latent} ${lat.tfidf_concept || "—"}${conf}` +
        (lat.llm_concept ? ` · ${lat.llm_concept}` : "") + (lat.activation > 0 ? " · active" : "");
      li.append(add, text);
      searchList.append(li);
    });
  }

  rows().forEach(bindRow);
  // Segment steering: the same scales for every test-side user, to show the cost of a steer.
  const segmentButton = document.getElementById("segment-run");
  const segmentOut = document.getElementById("segment-results");
  const pct = (v) => (v === null || v === undefined ? "—" : `${(100 * v).toFixed(1)}%`);
  const num = (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(4));

  function segmentEdits() {
    return rows()
      .filter((row) => row.dataset.kind === "scale")
      .map((row) => ({
        latent: Number(row.dataset.latent),
        value: Number(row.querySelector("input[type=range]").value),
        neutral: Number(row.dataset.neutral),
      }))
      .filter((e) => e.value !== e.neutral)
      .map(({ latent, value }) => ({ latent, value }));
  }

  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  function segmentTable(r) {
    const lines = r.latents.map((l) =>
      `<tr><td>#${l.latent}</td><td>${l.concept ? esc(l.concept) : "—"}</td><td class="num">${fmt(l.value)}×</td>` +
      `<td class="num">${l.n_active}</td><td class="num">${pct(l.presence.before)} → ${pct(l.presence.after)}</td>` +
      `<td class="num">${pct(l.share.before)} → ${pct(l.share.after)}</td></tr>`).join("");
    return `<p>${r.n_affected} of ${r.n_users} test users affected. NDCG@10 of the held-out item: ` +
      `<strong>${num(r["ndcg@10"].before)} → ${num(r["ndcg@10"].after)}</strong> (all), ` +
      `${num(r["ndcg@10_affected"].before)} → ${num(r["ndcg@10_affected"].after)} (affected).</p>` +
      `<table class="list"><thead><tr><th>latent</th><th>concept</th><th class="num">scale</th>` +
      `<th class="num">active for</th><th class="num">concept in top 10</th><th class="num">share of top 10</th>` +
      `</tr></thead><tbody>${lines}</tbody></table>`;
  }

  if (segmentButton) {
    segmentButton.addEventListener("click", async () => {
      const edits = segmentEdits();
      if (!edits.length) {
        segmentOut.innerHTML = '<p class="error">Move the slider of an active latent first (segment steering scales activations).</p>';
        return;
      }
      segmentOut.textContent = "computing…";
      const response = await fetch(panel.dataset.apiSegment, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ edits, mode: mode(), include_inactive: document.getElementById("segment-inactive").checked }),
      });
      const body = await response.json();
      if (!response.ok) {
        const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
        segmentOut.innerHTML = `<p class="error"></p>`;
        segmentOut.querySelector("p").textContent = `Segment steering failed: ${detail}`;
        return;
      }
      segmentOut.innerHTML = segmentTable(body);
    });
  }

  panel.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", () => schedule(0)));
  document.getElementById("steer-reset").addEventListener("click", () => {
    rows().forEach((row) => {
      if (row.querySelector("button.remove")) { row.remove(); return; }
      const input = row.querySelector("input[type=range]");
      input.value = row.dataset.neutral;
      row.querySelector(".val").textContent = fmt(input.value) + (row.dataset.kind === "scale" ? "×" : "");
    });
    const ep = panel.querySelector("input[name=mode][value=error_preserving]");
    if (ep) ep.checked = true;
    schedule(0);
  });
  let searchTimer = null;
  searchBox.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 200);
  });
})();
