// A perceptually ordered colour scale (viridis stops) and the legend drawn from it.

const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
];

// The colour of t in [0, 1] as [r, g, b].
export function colourAt(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return VIRIDIS[i].map((c, j) => Math.round(c + f * (VIRIDIS[i + 1][j] - c)));
}

// min and max of the finite values, widened when they coincide (a constant map).
export function rangeOf(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return null;
  return hi > lo ? [lo, hi] : [lo - 0.5, hi + 0.5];
}

export function drawLegend(title, range) {
  const bar = document.getElementById("legend-bar");
  bar.style.display = "";
  document.querySelector(".legend-range").style.display = "";
  document.getElementById("legend-categories").hidden = true;
  const ctx = bar.getContext("2d");
  for (let x = 0; x < bar.width; x++) {
    const [r, g, b] = colourAt(x / (bar.width - 1));
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(x, 0, 1, bar.height);
  }
  document.getElementById("legend-title").textContent = title;
  document.getElementById("legend-min").textContent = range ? range[0].toPrecision(3) : "–";
  document.getElementById("legend-max").textContent = range ? range[1].toPrecision(3) : "–";
}

// Categories (niches): tab10's colours, the same as the PNG maps of `tmescope niches`.
export const CATEGORIES = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
];

export function categoryColour(index) {
  return CATEGORIES[index % CATEGORIES.length];
}

// A legend of named swatches in place of the colour bar.
export function drawCategoryLegend(title, names) {
  document.getElementById("legend-title").textContent = title;
  document.getElementById("legend-bar").style.display = "none";
  document.querySelector(".legend-range").style.display = "none";
  const list = document.getElementById("legend-categories");
  list.replaceChildren();
  names.forEach((name, i) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${categoryColour(i).join(",")})`;
    item.append(swatch, document.createTextNode(name));
    list.appendChild(item);
  });
  list.hidden = false;
}
