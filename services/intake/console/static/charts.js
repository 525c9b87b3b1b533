// Pānui coordinator console: the incident page's two charts, drawn on a canvas (no library).
"use strict";

function lineChart(canvas, series, points) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width = canvas.clientWidth * devicePixelRatio;
  const hgt = canvas.height = canvas.clientHeight * devicePixelRatio;
  ctx.clearRect(0, 0, w, hgt);
  const pad = 30 * devicePixelRatio;
  const max = Math.max(1, ...points.flatMap((p) => series.map((s) => p[s])));
  ctx.strokeStyle = "#d0d4d9"; ctx.fillStyle = "#5f6368"; ctx.font = `${11 * devicePixelRatio}px system-ui`;
  ctx.beginPath(); ctx.moveTo(pad, pad / 2); ctx.lineTo(pad, hgt - pad); ctx.lineTo(w - pad / 2, hgt - pad); ctx.stroke();
  ctx.fillText(String(max), 2, pad / 2 + 8); ctx.fillText("0", 2, hgt - pad);
  if (points.length < 1) return;
  const x = (i) => pad + (w - 1.5 * pad) * (points.length === 1 ? 1 : i / (points.length - 1));
  const y = (v) => hgt - pad - (hgt - 1.5 * pad) * (v / max);
  for (const s of series) {
    ctx.strokeStyle = COLOURS[s]; ctx.lineWidth = 2 * devicePixelRatio; ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(x(i), y(p[s])) : ctx.moveTo(x(i), y(p[s]))));
    ctx.stroke();
  }
}

function barChart(canvas, counts) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width = canvas.clientWidth * devicePixelRatio;
  const hgt = canvas.height = canvas.clientHeight * devicePixelRatio;
  ctx.clearRect(0, 0, w, hgt);
  const keys = STATUSES.filter((s) => counts[s]);
  const max = Math.max(1, ...keys.map((k) => counts[k]));
  const bw = (w - 20) / Math.max(keys.length, 1);
  ctx.font = `${11 * devicePixelRatio}px system-ui`;
  keys.forEach((k, i) => {
    const bh = (hgt - 40 * devicePixelRatio) * counts[k] / max;
    ctx.fillStyle = k.includes("failure") ? COLOURS.failed : k === "delivered" ? COLOURS.delivered : "#0b3d59";
    ctx.fillRect(10 + i * bw + 4, hgt - 20 * devicePixelRatio - bh, bw - 8, bh);
    ctx.fillStyle = "#1f2328";
    ctx.fillText(`${k} ${counts[k]}`, 10 + i * bw + 4, hgt - 6 * devicePixelRatio);
  });
}
