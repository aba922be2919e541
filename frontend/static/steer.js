// RecSAE Explorer, user page: live steering. Every slider move (or value typed in the box beside
// it) swaps in the results block the server renders for it (?_fragment=1) and, once the server
// accepted it, rewrites the URL's query string (?_edits=latent:value,...&_mode=...) so the view
// can be shared; a value the server refuses is shown beside its slider and the lists stay as
// they were. Stale answers are aborted, moves are debounced. "Why this item" draws each steered
// item's score split with plotly.js, loaded the first time the panel is opened.
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

  // A row's value: what the slider or the box last said, as typed (the server judges it).
  function rowValue(row) {
    if (row.dataset.value !== undefined) return row.dataset.value;
    return row.querySelector("input[type=range]").value;
  }

  function editsQuery() {
    const parts = [];
    rows().forEach((row) => {
      const raw = String(rowValue(row)).trim();
      const value = Number(raw);
      const edited = raw === "" || !Number.isFinite(value) || value !== Number(row.dataset.neutral);
      row.classList.toggle("edited", edited);
      if (edited) parts.push(`${row.dataset.latent}:${raw !== "" && Number.isFinite(value) ? fmt(value) : raw}`);
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

  let lastRow = null; // the slider row moved last: a refusal without a latent goes beside it

  function clearRefusal() {
    document.querySelectorAll("#steer-refusal").forEach((p) => p.remove());
    rows().forEach((row) => row.classList.remove("refused"));
  }

  function showRefusal(message, latent) {
    clearRefusal();
    const p = document.createElement("p");
    p.id = "steer-refusal";
    p.className = "error refusal";
    p.setAttribute("role", "alert");
    p.textContent = message;
    const row = (latent !== undefined && latent !== null
      ? slidersBox.querySelector(`.slider-row[data-latent="${latent}"]`) : null) || lastRow;
    if (row) {
      row.classList.add("refused");
      row.append(p);
    } else {
      slidersBox.before(p);
    }
  }

  async function refresh() {
    const url = viewUrl();
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
        let detail = `the server answered ${response.status}`;
        let latent = null;
        try {
          const error = JSON.parse(body);
          detail = error.detail;
          const loc = error.errors && error.errors[0] && error.errors[0].loc;
          if (loc && loc.length > 2) latent = loc[2];
        } catch (_) { /* not the JSON error shape: keep the status */ }
        showRefusal(detail, latent);
        return;
      }
      clearRefusal();
      window.history.replaceState(null, "", url);
      if (shareLink) shareLink.href = url;
      const panelState = whyState();
      results.innerHTML = body;
      wireWhy(panelState);
    } catch (err) {
      if (err.name !== "AbortError") showRefusal(`Could not steer: ${err.message}`, null);
    } finally {
      if (controller === pending) {
        pending = null;
        results.classList.remove("busy");
      }
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay);
  }

  // Accessible names that say which concept a control moves, and the value in words.
  function label(row) {
    const input = row.querySelector("input[type=range]");
    const box = row.querySelector("input.val");
    const remove = row.querySelector("button.remove");
    const concept = row.dataset.concept ? ` (${row.dataset.concept})` : "";
    const what = `latent ${row.dataset.latent}${concept}`;
    const scale = row.dataset.kind === "scale";
    input.setAttribute("aria-label", `${what}: ${scale ? "scale" : "absolute activation"}`);
    input.setAttribute("aria-valuetext", scale ? `${fmt(input.value)}× the activation` : `activation ${fmt(input.value)}`);
    box.setAttribute("aria-label", `${what}: ${scale ? "scale, ×" : "absolute activation"}, typed`);
    if (remove) remove.setAttribute("aria-label", `remove the slider of ${what}`);
  }

  // The slider, the box and the URL hold one value: the box's text as the server rendered or
  // the user typed it. The slider has step="any" (docs/architecture.md, steering: a shared
  // value such as 20 is never snapped to the step grid); arrow keys move by data-step.
  function bindRow(row) {
    const input = row.querySelector("input[type=range]");
    const box = row.querySelector("input.val");
    if (row.dataset.value === undefined) row.dataset.value = box.value;
    input.value = box.value;
    label(row);
    const moved = () => {
      box.value = fmt(input.value);
      input.value = box.value;
      row.dataset.value = box.value;
      label(row);
      lastRow = row;
      schedule(60);
    };
    input.addEventListener("input", moved);
    input.addEventListener("keydown", (event) => {
      const sign = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 }[event.key];
      const step = Number(input.dataset.step);
      if (!sign || !(step > 0)) return;
      event.preventDefault();
      const next = Math.round(Number(input.value) / step + sign) * step;
      input.value = String(Math.min(Number(input.max), Math.max(Number(input.min), next)));
      moved();
    });
    box.addEventListener("change", () => {
      row.dataset.value = box.value;
      input.value = box.value; // the slider clamps; the server judges the typed value
      label(row);
      lastRow = row;
      schedule(0);
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
    row.dataset.concept = lat.tfidf_concept || lat.llm_concept || "";
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
    input.min = s.min; input.max = s.max; input.step = "any"; input.dataset.step = s.step;
    input.value = s.value;
    const val = document.createElement("input");
    val.type = "number";
    val.className = "val";
    val.min = s.min; val.max = s.max; val.step = "any"; val.value = fmt(s.value);
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
      add.setAttribute("aria-label", `add a slider for latent ${lat.latent} (${lat.tfidf_concept || lat.llm_concept || "no concept"})`);
      add.addEventListener("click", () => { addRow(lat); li.remove(); });
      const text = document.createElement("span");
      const conf = lat.tfidf_confidence == null ? "" : ` (${lat.tfidf_confidence.toFixed(2)})`;
      text.textContent = ` #${lat.latent} ${lat.tfidf_concept || "—"}${conf}` +
        (lat.llm_concept ? ` · ${lat.llm_concept}` : "") + (lat.activation > 0 ? " · active" : "");
      li.append(add, text);
      searchList.append(li);
    });
  }

  // --- why this item ---------------------------------------------------------------------
  const WHY_BARS = 8; // latents drawn one bar each; the rest are summed into one bar
  let plotlyLoading = null;

  function loadPlotly(src) {
    if (typeof Plotly !== "undefined") return Promise.resolve();
    if (!plotlyLoading) {
      plotlyLoading = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = src;
        script.onload = resolve;
        script.onerror = () => reject(new Error("plotly.js did not load"));
        document.head.append(script);
      });
    }
    return plotlyLoading;
  }

  function whyFigure(w) {
    const labels = [];
    const values = [];
    w.latents.slice(0, WHY_BARS).forEach((p) => {
      labels.push(`#${p.latent}${p.concept ? ` ${p.concept}` : ""}`);
      values.push(p.contribution);
    });
    const rest = w.latents.slice(WHY_BARS);
    if (rest.length) {
      labels.push(`${rest.length} other latents`);
      values.push(rest.reduce((sum, p) => sum + p.contribution, 0));
    }
    labels.push("decoder bias", "SAE error (x − x̂)");
    values.push(w.bias, w.error);
    if (w.item_bias) { labels.push("item bias"); values.push(w.item_bias); }
    return {
      data: [{
        type: "bar", orientation: "h", x: values, y: labels,
        marker: { color: values.map((v) => (v >= 0 ? "#1a7f37" : "#cf222e")) },
        hovertemplate: "%{y}: %{x:+.4f}<extra></extra>",
      }],
      layout: {
        height: 70 + 24 * labels.length,
        margin: { l: 10, r: 15, t: 30, b: 40 },
        font: { family: "system-ui, sans-serif", size: 12 },
        title: { text: `score ${w.score.toFixed(4)} = the sum of these bars`, font: { size: 13 } },
        xaxis: { title: { text: "contribution to the score" }, zeroline: true, zerolinecolor: "#8c959f" },
        yaxis: { type: "category", autorange: "reversed", automargin: true },
      },
    };
  }

  function whyState() {
    const panel = document.getElementById("why-panel");
    const select = document.getElementById("why-item");
    return { open: Boolean(panel && panel.open), idx: select ? select.value : null };
  }

  function showWhy(idx) {
    const whyPanel = document.getElementById("why-panel");
    const dataEl = document.getElementById("why-data");
    if (!whyPanel || !dataEl) return;
    whyPanel.querySelectorAll("table.why-table").forEach((t) => { t.hidden = t.dataset.idx !== String(idx); });
    if (!whyPanel.open) return;
    const w = JSON.parse(dataEl.textContent).find((x) => String(x.idx) === String(idx));
    const plot = document.getElementById("why-plot");
    if (!w || !plot) return;
    loadPlotly(whyPanel.dataset.plotly).then(() => {
      if (!plot.isConnected) return; // the results were swapped meanwhile
      const fig = whyFigure(w);
      // No mode bar: it would sit over the title (the table below has the numbers).
      Plotly.react(plot, fig.data, fig.layout, { displayModeBar: false, responsive: true });
      plot.dataset.drawn = String(idx);
    }).catch((err) => {
      plot.textContent = `The chart could not be drawn (${err.message}); the table below has the numbers.`;
    });
  }

  function wireWhy(state) {
    const whyPanel = document.getElementById("why-panel");
    const select = document.getElementById("why-item");
    if (!whyPanel || !select) return;
    if (state && state.idx && select.querySelector(`option[value="${state.idx}"]`)) select.value = state.idx;
    if (state && state.open) whyPanel.open = true;
    select.addEventListener("change", () => showWhy(select.value));
    whyPanel.addEventListener("toggle", () => showWhy(select.value));
    results.querySelectorAll("a.why-link").forEach((a) => a.addEventListener("click", (e) => {
      e.preventDefault();
      select.value = a.dataset.idx;
      whyPanel.open = true; // fires "toggle" when it was closed
      showWhy(select.value);
      whyPanel.scrollIntoView({ block: "nearest" });
    }));
    showWhy(select.value);
  }

  rows().forEach(bindRow);
  wireWhy(null);
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
        value: Number(rowValue(row)),
        neutral: Number(row.dataset.neutral),
      }))
      .filter((e) => e.value !== e.neutral)
      .map(({ latent, value }) => ({ latent, value }));
  }

  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  const signed = (v, digits) => {
    const text = Math.abs(v).toFixed(digits);
    return Number(text) === 0 ? text : `${v > 0 ? "+" : "−"}${text}`;
  };

  // "before → after, change [95% CI low, high]" for a change object of segment_json.
  function change(c, show, digits) {
    if (c.before === null || c.before === undefined) return "—";
    let text = `${show(c.before)} → ${show(c.after)}`;
    if (c.change !== null && c.change !== undefined) {
      const scale = show === pct ? 100 : 1;
      text += ` <span class="ci" title="change, with its 95% confidence interval (bootstrap over users)">(${signed(scale * c.change, digits)}`;
      if (c.ci95) text += `, 95% CI ${signed(scale * c.ci95[0], digits)} to ${signed(scale * c.ci95[1], digits)}`;
      text += ")</span>";
    }
    return text;
  }

  function segmentTable(r) {
    const lines = r.latents.map((l) =>
      `<tr><td>#${l.latent}</td><td>${l.concept ? esc(l.concept) : "—"}</td><td class="num">${fmt(l.value)}×</td>` +
      `<td class="num">${l.n_active}</td><td class="num">${l.n_set}</td>` +
      `<td class="num">${change(l.presence, pct, 1)}</td><td class="num">${change(l.share, pct, 1)}</td></tr>`).join("");
    const how = r.include_inactive
      ? "the latent was also switched on where it was inactive"
      : "only users where the latent is active were steered";
    return `<p>${r.n_affected} of ${r.n_users} test users affected (${how}). NDCG@10 of the held-out item: ` +
      `<strong>${change(r["ndcg@10"], num, 4)}</strong> (all), ` +
      `${change(r["ndcg@10_affected"], num, 4)} (affected).</p>` +
      `<table class="list"><thead><tr><th>latent</th><th>concept</th><th class="num">scale</th>` +
      `<th class="num" title="test users for whom the latent fires (presence and share are measured over them)">active for</th>` +
      `<th class="num" title="test users whose activation this edit changed">set for</th>` +
      `<th class="num" title="share of those users with the concept anywhere in their top 10 (paper eq. 5); changes in percentage points">concept in top 10</th>` +
      `<th class="num" title="mean share of the top 10 carrying the concept; changes in percentage points">share of top 10</th>` +
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
      row.dataset.value = row.dataset.neutral;
      row.querySelector("input.val").value = fmt(input.value);
      label(row);
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
