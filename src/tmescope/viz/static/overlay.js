// Spots, grid tiles, sub-spot bins and attention lines drawn on a canvas laid over the
// OpenSeadragon viewer. Positions are full-resolution pixels, the frame of the deep-zoom image;
// every redraw maps them to screen pixels through the viewer's own viewport conversion.

import { categoryColour, colourAt } from "./colours.js";

const BIN_STEPS = 64; // colour steps of the bins: finer than the eye tells apart on a map

export class SpotOverlay {
  constructor(viewer) {
    this.viewer = viewer;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "spot-overlay";
    Object.assign(this.canvas.style, {
      position: "absolute", left: "0", top: "0", pointerEvents: "none",
    });
    viewer.canvas.appendChild(this.canvas);
    this.rows = null; // {barcode, kind, x, y}
    this.values = null;
    this.range = null;
    this.opacity = 0.75;
    this.show = { spot: true, tile: false };
    this.radius = { spot: 55, tile: 55 }; // full-resolution pixels
    this.selected = -1;
    this.edges = [];
    this.drawn = 0;
    this.bins = null; // /bins of the sample: drawn instead of spots and tiles while set
    this.binValues = null;
    this.binRange = null;
    this.binsDrawn = 0;
    // Bins are painted opaque here, then blended once: squares at partial opacity would show
    // their shared edges as seams.
    this.binCanvas = document.createElement("canvas");
    for (const event of ["animation", "update-viewport", "resize", "open"]) {
      viewer.addHandler(event, () => this.draw());
    }
  }

  setRows(rows, spotRadius) {
    this.rows = rows;
    this.values = null;
    this.selected = -1;
    this.edges = [];
    this.bins = null;
    this.radius = { spot: spotRadius, tile: tileHalfStep(rows) ?? spotRadius };
    this.draw();
  }

  // range null and categorical true: values are category indices (niches), not a scale.
  setValues(values, range, categorical = false) {
    this.values = values;
    this.range = range;
    this.categorical = categorical;
    this.draw();
  }

  // bins: {x, y, bin_px} (null: back to the spots); values: one per bin; range: [min, max].
  setBins(bins, values = null, range = null) {
    this.bins = bins;
    this.binValues = values;
    this.binRange = range;
    this.draw();
  }

  select(index, edges) {
    this.selected = index;
    this.edges = edges;
    this.draw();
  }

  // Screen position (relative to the viewer element) of a full-resolution point.
  toScreen(x, y) {
    const p = this.viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
    return [p.x, p.y];
  }

  // The row under an element-relative point, spots before tiles; -1 when none.
  rowAt(px, py) {
    if (!this.rows) return -1;
    const [ox, oy] = this.toScreen(0, 0);
    const [ux] = this.toScreen(1, 0);
    const scale = ux - ox;
    let best = -1;
    let bestScore = Infinity;
    const n = this.rows.x.length;
    for (let i = 0; i < n; i++) {
      const kind = this.rows.kind[i];
      if (!this.show[kind]) continue;
      const dx = ox + this.rows.x[i] * scale - px;
      const dy = oy + this.rows.y[i] * scale - py;
      const reach = Math.max(4, this.radius[kind] * scale);
      const d = Math.hypot(dx, dy);
      const score = d / reach + (kind === "tile" ? 0.5 : 0); // a spot wins a tie
      if (d <= reach && score < bestScore) {
        best = i;
        bestScore = score;
      }
    }
    return best;
  }

  draw() {
    const box = this.viewer.container.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const canvas = this.canvas;
    if (canvas.width !== Math.round(box.width * ratio)) canvas.width = Math.round(box.width * ratio);
    if (canvas.height !== Math.round(box.height * ratio)) canvas.height = Math.round(box.height * ratio);
    canvas.style.width = `${box.width}px`;
    canvas.style.height = `${box.height}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, box.width, box.height);
    this.drawn = 0;
    this.binsDrawn = 0;
    if (!this.rows || this.viewer.world.getItemCount() === 0) return;
    // The image → screen map is a scale and a shift: two conversions give it for every row.
    const [ox, oy] = this.toScreen(0, 0);
    const [ux] = this.toScreen(1, 0);
    const scale = ux - ox;
    if (this.bins) this.drawBins(ctx, ox, oy, scale, ratio);
    ctx.globalAlpha = this.opacity;
    const { x, y, kind } = this.rows;
    for (const layer of ["tile", "spot"]) { // spots on top of the denser tile map
      if (!this.show[layer] || this.bins) continue;
      const r = Math.max(1.5, this.radius[layer] * scale);
      for (let i = 0; i < x.length; i++) {
        if (kind[i] !== layer) continue;
        const sx = ox + x[i] * scale;
        const sy = oy + y[i] * scale;
        if (sx < -r || sy < -r || sx > box.width + r || sy > box.height + r) continue;
        const v = this.values ? this.values[i] : null;
        if (this.values && (v === null || !Number.isFinite(v))) {
          if (layer === "tile") continue; // a tile has no measured value: nothing to show
          ctx.strokeStyle = "#888";
          ctx.lineWidth = 1;
          ctx.beginPath();
          ctx.arc(sx, sy, r, 0, 2 * Math.PI);
          ctx.stroke();
        } else {
          const t = this.range && v !== null ? (v - this.range[0]) / (this.range[1] - this.range[0]) : 0.5;
          const [cr, cg, cb] = !this.values ? [233, 30, 99] : this.categorical ? categoryColour(v) : colourAt(t);
          ctx.fillStyle = `rgb(${cr},${cg},${cb})`;
          ctx.beginPath();
          if (layer === "tile") ctx.rect(sx - r, sy - r, 2 * r, 2 * r);
          else ctx.arc(sx, sy, r, 0, 2 * Math.PI);
          ctx.fill();
        }
        this.drawn += 1;
      }
    }
    ctx.globalAlpha = 1;
    this.drawSelection(ctx, ox, oy, scale);
  }

  // Every bin on screen as a square of its true size, one path per colour step (a few dozen
  // fills, not one per bin), in device pixels rounded so that neighbours tile without gaps.
  drawBins(ctx, ox, oy, scale, ratio) {
    const out = this.canvas;
    const off = this.binCanvas;
    if (off.width !== out.width || off.height !== out.height) {
      off.width = out.width;
      off.height = out.height;
    }
    const octx = off.getContext("2d");
    octx.clearRect(0, 0, off.width, off.height);
    const { x, y, bin_px: side } = this.bins;
    const values = this.binValues;
    const [lo, hi] = this.binRange || [0, 1];
    const half = (side * scale * ratio) / 2;
    const paths = Array.from({ length: BIN_STEPS }, () => new Path2D());
    for (let i = 0; i < x.length; i++) {
      const v = values ? values[i] : null;
      if (v === null || !Number.isFinite(v)) continue;
      const cx = (ox + x[i] * scale) * ratio;
      const cy = (oy + y[i] * scale) * ratio;
      if (cx < -half || cy < -half || cx > off.width + half || cy > off.height + half) continue;
      const t = Math.min(1, Math.max(0, (v - lo) / (hi - lo)));
      const x0 = Math.round(cx - half);
      const y0 = Math.round(cy - half);
      const w = Math.max(1, Math.round(cx + half) - x0);
      const h = Math.max(1, Math.round(cy + half) - y0);
      paths[Math.round(t * (BIN_STEPS - 1))].rect(x0, y0, w, h);
      this.binsDrawn += 1;
    }
    paths.forEach((path, step) => {
      const [r, g, b] = colourAt(step / (BIN_STEPS - 1));
      octx.fillStyle = `rgb(${r},${g},${b})`;
      octx.fill(path);
    });
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = this.opacity;
    ctx.drawImage(off, 0, 0);
    ctx.restore();
  }

  drawSelection(ctx, ox, oy, scale) {
    if (this.selected < 0) return;
    const cx = ox + this.rows.x[this.selected] * scale;
    const cy = oy + this.rows.y[this.selected] * scale;
    const heaviest = Math.max(1e-9, ...this.edges.map((e) => e.weight));
    ctx.strokeStyle = "#ff6f00";
    for (const edge of this.edges) {
      const w = edge.weight / heaviest;
      ctx.globalAlpha = 0.25 + 0.75 * w;
      ctx.lineWidth = 1 + 7 * w;
      ctx.beginPath();
      ctx.moveTo(cx, cy);
      ctx.lineTo(ox + edge.x * scale, oy + edge.y * scale);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#000";
    ctx.beginPath();
    ctx.arc(cx, cy, Math.max(6, this.radius.spot * scale + 3), 0, 2 * Math.PI);
    ctx.stroke();
  }
}

// Half the step of the tile grid (the smallest gap between two tile centres on a row).
function tileHalfStep(rows) {
  const xs = [];
  for (let i = 0; i < rows.x.length; i++) if (rows.kind[i] === "tile") xs.push(rows.x[i]);
  if (xs.length < 2) return null;
  const unique = [...new Set(xs)].sort((a, b) => a - b);
  let step = Infinity;
  for (let i = 1; i < unique.length; i++) step = Math.min(step, unique[i] - unique[i - 1]);
  return Number.isFinite(step) ? step / 2 : null;
}
