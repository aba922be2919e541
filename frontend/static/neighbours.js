// The latent page's neighbours section (docs/method.md §6.3): loads the neighbours page's fragment
// once the section scrolls into view; without JavaScript its links lead to the same tables.
"use strict";

(() => {
  const section = document.getElementById("neighbours");
  if (!section || !section.dataset.fragment) return;
  const body = section.querySelector(".neighbours-body");

  async function load() {
    body.textContent = "Finding the nearest latents…";
    try {
      const response = await fetch(section.dataset.fragment, { headers: { Accept: "text/html" } });
      if (!response.ok) throw new Error(`${response.status}`);
      body.innerHTML = await response.text();
      section.dataset.loaded = "1";
    } catch (err) {
      body.textContent = `Could not load the nearest latents (${err.message}); follow the link above.`;
      section.dataset.loaded = "error";
    }
  }

  if (!("IntersectionObserver" in window)) { load(); return; }
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) { observer.disconnect(); load(); }
  }, { rootMargin: "200px" });
  observer.observe(section);
})();
