// The side panel: a clicked spot's values, the attention it gave, and similar regions.

const $ = (id) => document.getElementById(id);

function cell(tag, text) {
  const el = document.createElement(tag);
  el.textContent = text;
  return el;
}

const fmt = (v) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(3));

// values: [{feature, measured, predicted, std}]
export function showSpot(sample, row, values) {
  $("hint").hidden = true;
  $("spot").hidden = false;
  $("spot-title").textContent = `${sample} · ${row.barcode} (${row.kind})`;
  const table = $("spot-values");
  table.replaceChildren();
  const head = document.createElement("tr");
  for (const h of ["", "measured", "predicted", "± std"]) head.appendChild(cell("th", h));
  table.appendChild(head);
  for (const v of values) {
    const tr = document.createElement("tr");
    tr.append(cell("td", v.feature), cell("td", fmt(v.measured)), cell("td", fmt(v.predicted)),
      cell("td", fmt(v.std)));
    table.appendChild(tr);
  }
}

export function showAttention(edges, message) {
  $("attention").hidden = false;
  const list = $("attention-list");
  list.replaceChildren();
  if (message) {
    list.appendChild(cell("li", message));
    return;
  }
  for (const e of edges) list.appendChild(cell("li", `${e.barcode} (${e.kind}): ${e.weight.toFixed(3)}`));
}

// hits: the /api/query hits; onOpen(hit) is called when a thumbnail is clicked.
export function showSimilar(hits, message, onOpen) {
  $("similar").hidden = false;
  const list = $("similar-list");
  list.replaceChildren();
  if (message) {
    list.appendChild(cell("p", message));
    return;
  }
  for (const hit of hits) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = hit.thumb;
    img.alt = `${hit.sample} ${hit.barcode}`;
    img.loading = "lazy";
    figure.append(img, cell("figcaption", `#${hit.rank} ${hit.sample} · ${hit.barcode} · ${hit.score.toFixed(3)}`));
    figure.addEventListener("click", () => onOpen(hit));
    list.appendChild(figure);
  }
}
