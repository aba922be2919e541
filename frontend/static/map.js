// The latent map (docs/method.md §6.2): a plotly scatter of the points the server embedded as
// JSON, coloured by concept method or by confidence, sized by density; a click opens the latent.
"use strict";

(() => {
  const div = document.getElementById("latent-map");
  const data = div && document.getElementById(div.dataset.points);
  if (!div || !data || typeof Plotly === "undefined") return;
  const points = JSON.parse(data.textContent);
  const highlight = div.dataset.highlight === undefined ? null : Number(div.dataset.highlight);
  const select = document.getElementById("map-colour");
  const METHODS = [
    ["both", "TF-IDF and LLM", "#6a3d9a"],
    ["tfidf", "TF-IDF only", "#1f78b4"],
    ["llm", "LLM only", "#e6550d"],
    ["none", "no concept", "#b0b0b0"],
  ];
  const maxDensity = Math.max(...points.map((p) => p.density), 1e-9);
  const size = (p) => 5 + 15 * Math.sqrt(p.density / maxDensity);
  const label = (p) => {
    const concept = p.concept ? p.concept : "no concept";
    const conf = p.confidence === null ? "" : ` (${p.confidence.toFixed(2)})`;
    const dead = p.dead ? " · dead" : "";
    return `#${p.idx}: ${concept}${conf}<br>density ${(100 * p.density).toFixed(2)}%${dead}`;
  };

  function trace(name, subset, marker) {
    return {
      type: "scatter",
      mode: "markers",
      name,
      x: subset.map((p) => p.x),
      y: subset.map((p) => p.y),
      customdata: subset.map((p) => p.url),
      text: subset.map(label),
      hovertemplate: "%{text}<extra></extra>",
      marker: {
        size: subset.map(size),
        symbol: subset.map((p) => (p.dead ? "x" : "circle")),
        line: { width: subset.map((p) => (p.idx === highlight ? 3 : 0)), color: "#000" },
        ...marker,
      },
    };
  }

  function traces(mode) {
    if (mode === "confidence") {
      const withConf = points.filter((p) => p.confidence !== null);
      const without = points.filter((p) => p.confidence === null);
      return [
        trace("no confidence", without, { color: "#c8c8c8" }),
        trace("best confidence", withConf, {
          color: withConf.map((p) => p.confidence),
          colorscale: "Viridis",
          cmin: 0,
          cmax: 1,
          colorbar: { title: { text: "confidence" } },
        }),
      ];
    }
    return METHODS.map(([key, name, color]) =>
      trace(name, points.filter((p) => p.method === key), { color })).filter((t) => t.x.length);
  }

  const layout = {
    margin: { t: 10, r: 10, b: 30, l: 30 },
    height: 640,
    hovermode: "closest",
    xaxis: { showticklabels: false, zeroline: false, title: { text: "" } },
    yaxis: { showticklabels: false, zeroline: false },
    legend: { orientation: "h" },
  };
  const config = { displaylogo: false, responsive: true };

  // Find: the latents whose concept contains the text get a red ring, drawn on top.
  const find = document.getElementById("map-find");
  const findStatus = document.getElementById("map-find-status");

  function found() {
    const q = find ? find.value.trim().toLowerCase() : "";
    if (!q) return null;
    const hits = points.filter((p) => p.concept && p.concept.toLowerCase().includes(q));
    const t = trace(`concept contains “${find.value.trim()}”`, hits, {
      color: "rgba(0,0,0,0)",
      size: hits.map((p) => size(p) + 8),
      line: { width: 2.5, color: "#d1242f" },
    });
    t.marker.symbol = "circle";
    return { q: find.value.trim(), hits, trace: t };
  }

  function draw() {
    const all = traces(select ? select.value : "method");
    const hit = found();
    if (hit) all.push(hit.trace);
    if (findStatus) {
      findStatus.textContent = !hit ? "" : hit.hits.length
        ? `${hit.hits.length} latent${hit.hits.length === 1 ? "" : "s"} with a concept containing “${hit.q}”, ringed in red`
        : `no latent's concept contains “${hit.q}”`;
    }
    div.dataset.found = hit ? String(hit.hits.length) : "";
    Plotly.react(div, all, layout, config);
  }
  draw();
  if (select) select.addEventListener("change", draw);
  let findTimer = null;
  if (find) find.addEventListener("input", () => { clearTimeout(findTimer); findTimer = setTimeout(draw, 150); });
  div.on("plotly_click", (event) => {
    const point = event.points && event.points[0];
    if (point && point.customdata) window.location.assign(point.customdata);
  });
  div.dataset.ready = "1";
})();
