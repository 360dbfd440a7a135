// The viewer page: OpenSeadragon shows the H&E deep-zoom tiles, SpotOverlay colours the spots
// (or the sub-spot bins), and the side panel explains a clicked spot. State lives in one object; every control calls
// one function that updates it and redraws.

import { api } from "./api.js";
import { drawCategoryLegend, drawLegend, rangeOf } from "./colours.js";
import { initCompare, showSamplePhenotype } from "./compare.js";
import { SpotOverlay } from "./overlay.js";
import { showAttention, showSimilar, showSpot } from "./panel.js";

const MISSING = "the viewer's JavaScript libraries are missing: run `make viewer-assets` (npm ci in viewer/)";
const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  sample: null, // SampleInfo
  rows: null, // /spots of the current sample
  bins: null, // /bins of the current sample, once the sub-spot maps were asked for
  viewer: null,
  overlay: null,
  interactionsWanted: false, // the cohort's interactions were asked for (computing them is slow)
};

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function fail(error) {
  console.error(error);
  setStatus(error.message || String(error), true);
}

async function main() {
  state.info = await api.info();
  if (typeof window.OpenSeadragon === "undefined" || state.info.assets_missing) {
    $("missing").hidden = false;
    $("missing").textContent = state.info.assets_missing || MISSING;
    document.body.dataset.ready = "missing-assets";
    return;
  }
  state.viewer = OpenSeadragon({
    element: $("slide"),
    prefixUrl: "/vendor/openseadragon/images/",
    showNavigator: true,
    navigatorPosition: "TOP_RIGHT",
    gestureSettingsMouse: { clickToZoom: false }, // a click selects a spot instead
    maxZoomPixelRatio: 4,
    crossOriginPolicy: false,
  });
  state.overlay = new SpotOverlay(state.viewer);
  state.viewer.addHandler("canvas-click", (event) => {
    if (event.quick) onClick(event.position);
  });
  // Marks the page once a tile of the current slide has arrived (tests wait on it).
  state.viewer.addHandler("tile-loaded", () => { document.body.dataset.slide = "loaded"; });
  const select = $("sample");
  for (const s of state.info.samples) select.appendChild(new Option(sampleLabel(s), s.id));
  select.addEventListener("change", () => openSample(select.value).catch(fail));
  $("layer").addEventListener("change", () => { fillFeatures(); recolour().catch(fail); });
  $("feature").addEventListener("change", () => recolour().catch(fail));
  $("subspot").hidden = !state.info.has_subspot;
  fillPopulations(state.info.populations); // known before any sample's bins are predicted
  $("subspot-on").addEventListener("change", () => recolour().catch(fail));
  $("subspot-layer").addEventListener("change", () => {
    $("subspot-b-label").hidden = $("subspot-layer").value !== "interface";
    recolour().catch(fail);
  });
  for (const id of ["subspot-a", "subspot-b"]) $(id).addEventListener("change", () => recolour().catch(fail));
  initCompare(state.info.comparison); // the groups' comparison, when the metadata allow one
  $("interactions-scope").addEventListener("change", () => showInteractions().catch(fail));
  $("interactions-load").addEventListener("click", () => {
    state.interactionsWanted = true;
    showInteractions().catch(fail);
  });
  $("similar-space").addEventListener("change", () => {
    const barcode = document.body.dataset.selected;
    if (barcode) showSimilarOf(state.sample.id, barcode);
  });
  $("opacity").addEventListener("input", (e) => { state.overlay.opacity = Number(e.target.value); state.overlay.draw(); });
  $("show-spots").addEventListener("change", (e) => { state.overlay.show.spot = e.target.checked; state.overlay.draw(); });
  $("show-tiles").addEventListener("change", (e) => { state.overlay.show.tile = e.target.checked; state.overlay.draw(); });
  if (!state.info.samples.length) {
    setStatus("the store holds no complete sample", true);
    return;
  }
  // A link may name the sample; otherwise the one the server picked: spots with measured
  // values, never a bare H&E-only slide with nothing measured to colour.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("sample");
  const first = state.info.samples.find((s) => s.id === fromHash) || state.info.samples.find((s) => s.id === state.info.start) || state.info.samples[0];
  await openSample(first.id);
}

function sampleLabel(s) {
  if (s.n_spots > 0) return `${s.id} (${s.n_spots} spots)`;
  return `${s.id} (${s.he_only ? "H&E only, " : ""}${s.n_tiles} tiles)`;
}

// The layers a sample can show: measured needs counts, the others a model. The chosen layer
// moves to one the sample has (an H&E-only slide opens on its predictions, not on an error).
function fitLayers(sample) {
  const usable = (value) => (value === "measured" ? sample.has_counts : sample.has_predictions);
  for (const option of $("layer").options) option.disabled = !usable(option.value);
  if (!usable($("layer").value)) {
    const fallback = [...$("layer").options].find((o) => !o.disabled && o.value !== "niches");
    $("layer").value = fallback ? fallback.value : "measured";
  }
}

// Open a sample: its tile pyramid, its rows, then colour them. Resolves once the slide is open.
async function openSample(sampleId, focus = null) {
  $("sample").value = sampleId;
  history.replaceState(null, "", `#sample=${encodeURIComponent(sampleId)}`);
  setStatus(`loading ${sampleId}…`);
  // The sample's own description (its genes, its image's size) comes with its rows: the list
  // the page started from holds only what the store's records say.
  const [sample, dzi, rows] = await Promise.all([api.sample(sampleId), api.dzi(sampleId), api.spots(sampleId)]);
  state.sample = sample;
  fitLayers(sample);
  $("show-tiles").disabled = sample.n_tiles === 0;
  if (sample.n_spots === 0 && sample.n_tiles > 0) {
    $("show-tiles").checked = true; // a slide without spots: its tiles are all there is
    state.overlay.show.tile = true;
  }
  $("similar-space").options[1].disabled = !sample.has_predictions;
  if (!sample.has_predictions) $("similar-space").value = "raw";
  fillFeatures();
  state.rows = rows;
  state.bins = null;
  delete document.body.dataset.slide;
  const opened = new Promise((resolve) => state.viewer.addOnceHandler("open", resolve));
  state.viewer.open({
    width: dzi.width,
    height: dzi.height,
    tileSize: dzi.tile_size,
    tileOverlap: 0,
    minLevel: 0,
    maxLevel: dzi.max_level,
    getTileUrl: (level, col, row) =>
      dzi.tile_url.replace("{level}", level).replace("{col}", col).replace("{row}", row),
  });
  await opened;
  state.overlay.setRows(rows, sample.spot_diameter_um / 2 / sample.mpp);
  await recolour();
  if (focus) {
    const point = state.viewer.viewport.imageToViewportCoordinates(focus.x, focus.y);
    state.viewer.viewport.zoomTo(state.viewer.viewport.getMaxZoom() / 4, point, true);
    state.viewer.viewport.panTo(point, true);
    const index = rows.barcode.indexOf(focus.barcode);
    if (index >= 0) await selectRow(index);
  } else {
    clearPanel();
  }
  setStatus(`${sampleId}: ${sample.n_spots} spots, ${sample.n_tiles} tiles`);
  showSamplePhenotype(sampleId);
  // Who meets whom is computed for the whole cohort: minutes of work for dozens of samples,
  // so only once asked for (its button, or the niches layer, which computes it too).
  showInteractions().catch(fail);
}

function fillFeatures() {
  const sample = state.sample;
  const select = $("feature");
  const previous = select.value;
  select.replaceChildren();
  // Measured values of a sample without counts do not exist: nothing to list for them.
  const none = $("layer").value === "measured" && !sample.has_counts;
  const groups = none ? [] : [["TME states", sample.states], ["genes", sample.genes]];
  for (const [label, names] of groups) {
    if (!names.length) continue;
    const group = document.createElement("optgroup");
    group.label = label;
    for (const name of names) group.appendChild(new Option(name, name));
    select.appendChild(group);
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

// Fetch one value per row for the chosen layer and feature, then redraw and relabel the legend.
let recolouring = 0; // only the latest request may paint: answers can arrive out of order

async function recolour() {
  const ticket = ++recolouring;
  const layer = $("layer").value;
  const feature = $("feature").value;
  const binsOn = state.info.has_subspot && $("subspot-on").checked;
  $("layer").disabled = binsOn;
  $("feature").disabled = binsOn || layer === "niches";
  if (binsOn) {
    await recolourBins(ticket);
    return;
  }
  state.overlay.setBins(null);
  if (layer === "niches") {
    setStatus("finding the cohort's niches (the first time takes a while)…");
    const body = await api.niches(state.sample.id);
    if (!state.interactionsWanted) { // computed with the niches: show them now
      state.interactionsWanted = true;
      showInteractions().catch(fail);
    }
    if (ticket !== recolouring) return;
    state.overlay.setValues(body.labels, null, true);
    drawCategoryLegend("niches of the cohort", body.names);
    document.body.dataset.colouredBy = "niches";
    setStatus(`${state.sample.id}: ${body.names.length} niches`);
    return;
  }
  if (!feature) {
    state.overlay.setValues(null, null);
    const why = state.sample.has_predictions
      ? "no feature to colour by"
      : "nothing measured on this slide: start the viewer with --model to see predictions";
    drawLegend(why, null);
    document.body.dataset.colouredBy = "nothing";
    return;
  }
  const body = await api.values(state.sample.id, layer, feature);
  if (ticket !== recolouring) return;
  const range = rangeOf(body.values);
  state.overlay.setValues(body.values, range);
  drawLegend(`${feature} — ${$("layer").selectedOptions[0].textContent}`, range);
  document.body.dataset.colouredBy = `${layer}:${feature}`;
}

// The sub-spot bins of the sample, coloured by the layer and population(s) of the panel.
async function recolourBins(ticket) {
  const sampleId = state.sample.id;
  if (!state.bins || state.bins.sample_id !== sampleId) {
    setStatus(`predicting the sub-spot maps of ${sampleId} (the first time takes a few seconds)…`);
    const bins = await api.bins(sampleId);
    if (state.sample.id !== sampleId) return;
    state.bins = bins;
    fillPopulations(bins.populations);
    if (ticket !== recolouring) return;
  }
  const bins = state.bins;
  const layer = $("subspot-layer").value;
  const [a, b] = [$("subspot-a").value, $("subspot-b").value];
  if (layer === "interface" && a === b) {
    setStatus("an interface needs two different populations", true);
    return;
  }
  const feature = layer === "interface" ? `${a}|${b}` : a;
  const body = await api.binValues(sampleId, layer, feature);
  if (ticket !== recolouring) return;
  const range = rangeOf(body.values);
  state.overlay.setBins(bins, body.values, range);
  const name = layer === "interface" ? `${a} meets ${b}` : a;
  drawLegend(`${name} — ${$("subspot-layer").selectedOptions[0].textContent}`, range);
  document.body.dataset.colouredBy = `subspot:${layer}:${feature}`;
  setStatus(`${sampleId}: ${bins.n} bins of ${bins.bin_um} µm`);
}

// The population selectors, keeping what was chosen; B starts on another population than A.
function fillPopulations(populations) {
  if (!populations.length) return;
  for (const [id, fallback] of [["subspot-a", 0], ["subspot-b", 1]]) {
    const select = $(id);
    const previous = select.value;
    select.replaceChildren(...populations.map((name) => new Option(name, name)));
    select.value = populations.includes(previous) ? previous : populations[Math.min(fallback, populations.length - 1)];
  }
}

// The interaction panel: the strongest pairs and the two figures, of the sample or the cohort.
let interacting = 0;

async function showInteractions() {
  const sample = state.sample;
  const section = $("interactions");
  section.hidden = !sample.has_predictions;
  if (!sample.has_predictions) return;
  $("interactions-load").hidden = state.interactionsWanted;
  if (!state.interactionsWanted) return;
  const ticket = ++interacting;
  const own = $("interactions-scope").value === "sample" || state.info.samples.length < 2;
  if (state.info.samples.length < 2) $("interactions-scope").value = "sample";
  $("interactions-status").textContent = "computing who meets whom (the first time takes a while)…";
  let body;
  try {
    body = await api.interactions(own ? sample.id : null);
  } catch (error) {
    if (ticket === interacting) $("interactions-status").textContent = error.message;
    return;
  }
  if (ticket !== interacting) return;
  const pooled = body.pooled;
  $("interactions-status").textContent = pooled
    ? `pooled over ${body.n_samples} samples, ${body.n_perms} permutations each`
    : `${sample.id}, ${body.n_perms} permutations`;
  const table = $("interactions-pairs");
  table.replaceChildren();
  const head = document.createElement("tr");
  for (const h of ["A", "B", pooled ? "z ± sd" : "z"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  table.appendChild(head);
  const z = (v) => (v === null || v === undefined ? "–" : (v > 0 ? "+" : "") + v.toFixed(1));
  for (const pair of body.pairs) {
    const tr = document.createElement("tr");
    const value = pooled ? `${z(pair.mean_z)} ± ${pair.std_z === null ? "–" : pair.std_z.toFixed(1)}` : z(pair.z);
    for (const [text, numeric] of [[pair.a, false], [pair.b, false], [value, true]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (numeric) td.className = "num";
      tr.appendChild(td);
    }
    table.appendChild(tr);
  }
  $("interactions-heatmap").src = body.figures.enrichment;
  $("interactions-curves").src = body.figures.cooccurrence;
  for (const id of ["interactions-heatmap", "interactions-curves"]) $(id).hidden = false;
  document.body.dataset.interactions = String(body.pairs.length);
}

function onClick(position) {
  const index = state.overlay.rowAt(position.x, position.y);
  if (index >= 0) selectRow(index).catch(fail);
}

async function selectRow(index) {
  const sample = state.sample;
  const rows = state.rows;
  const barcode = rows.barcode[index];
  const row = { barcode, kind: rows.kind[index] };
  document.body.dataset.selected = barcode;
  state.overlay.select(index, []);
  const at = await api.spot(sample.id, barcode);
  showSpot(sample.id, row, at.values);
  if (sample.has_predictions) {
    api.attention(sample.id, barcode)
      .then((body) => { state.overlay.select(index, body.edges); showAttention(body.edges); })
      .catch((error) => showAttention([], error.message));
  } else {
    showAttention([], "start the viewer with --model to see the model's attention");
  }
  showSimilarOf(sample.id, barcode);
}

// Similar regions of the selected row, in the space the panel's selector names.
function showSimilarOf(sampleId, barcode) {
  const space = $("similar-space").value;
  delete document.body.dataset.similar;
  api.similar(sampleId, barcode, 8, space)
    .then((body) => {
      showSimilar(body.hits, null, (hit) => openSample(hit.sample, hit).catch(fail));
      document.body.dataset.similar = `${space}:${body.hits.length}`;
    })
    .catch((error) => showSimilar([], error.message));
}

function clearPanel() {
  $("hint").hidden = false;
  for (const id of ["spot", "attention", "similar"]) $(id).hidden = true;
  delete document.body.dataset.selected;
}

// For tests and the console: where a row is drawn, relative to the page.
window.tmescopeViewer = {
  state,
  pagePositionOf(barcode) {
    const index = state.rows.barcode.indexOf(barcode);
    const [x, y] = state.overlay.toScreen(state.rows.x[index], state.rows.y[index]);
    const box = state.viewer.container.getBoundingClientRect();
    return { x: box.left + x, y: box.top + y };
  },
};

main().catch(fail);
