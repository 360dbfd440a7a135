// Requests to the viewer's JSON API; a failed one throws an Error carrying the server's detail.

export async function getJSON(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(query ? `${path}?${query}` : path);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

export const api = {
  info: () => getJSON("/api/info"),
  sample: (sample) => getJSON(`/api/samples/${encodeURIComponent(sample)}`),
  spots: (sample) => getJSON(`/api/samples/${encodeURIComponent(sample)}/spots`),
  values: (sample, layer, feature) =>
    getJSON(`/api/samples/${encodeURIComponent(sample)}/values`, { layer, feature }),
  dzi: (sample) => getJSON(`/api/samples/${encodeURIComponent(sample)}/dzi`),
  spot: (sample, spot) => getJSON(`/api/samples/${encodeURIComponent(sample)}/spot`, { spot }),
  attention: (sample, spot) =>
    getJSON(`/api/samples/${encodeURIComponent(sample)}/attention`, { spot }),
  similar: (sample, spot, k = 8, space = "raw") => getJSON("/api/query", { sample, spot, k, space }),
  niches: (sample) => getJSON(`/api/samples/${encodeURIComponent(sample)}/niches`),
  bins: (sample) => getJSON(`/api/samples/${encodeURIComponent(sample)}/bins`),
  binValues: (sample, layer, feature) =>
    getJSON(`/api/samples/${encodeURIComponent(sample)}/bins/values`, { layer, feature }),
  interactions: (sample) => getJSON("/api/interactions", sample ? { sample } : {}),
  compare: (by) => getJSON("/api/compare", by ? { by } : {}),
};
