/**
 * Logs per level over the searched range (GET /api/histogram), as stacked
 * bars: each level's series holds its count plus those of the levels below
 * it and is drawn before them, so the shorter bars cover the lower part of
 * the taller ones. One device's histogram has totals only. Dragging across
 * the chart selects a range: onZoom gets it (epoch ms).
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { LEVELS, type Histogram, type Level } from './api';

const HEIGHT = 140;

interface Props {
  histogram: Histogram;
  onZoom(since: number, until: number): void;
}

/** `color(level)`: the level's colour in the page's theme (app.css). */
function chartData(h: Histogram, color: (l: Level) => string): { data: uPlot.AlignedData; series: uPlot.Series[] } {
  const xs = h.buckets.map((b) => Date.parse(b.start) / 1000);
  const bars = uPlot.paths.bars!({ size: [0.9, 64], align: 1 });
  if (!h.buckets.some((b) => b.levels)) {
    return {
      data: [xs, h.buckets.map((b) => b.total)],
      series: [{}, { label: 'logs', fill: color('INFO'), stroke: color('INFO'), width: 0, paths: bars, points: { show: false } }],
    };
  }
  // Highest level first: its series is the whole stack.
  const order = [...LEVELS].reverse();
  const stacked = order.map((_, i) => h.buckets.map((b) => order.slice(i).reduce((n, l) => n + (b.levels?.[l] ?? 0), 0)));
  return {
    data: [xs, ...stacked],
    series: [{}, ...order.map((l) => ({ label: l, fill: color(l), stroke: color(l), width: 0, paths: bars, points: { show: false } }))],
  };
}

export function Chart({ histogram, onZoom }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const zoom = useRef(onZoom);
  zoom.current = onZoom;
  useEffect(() => {
    const el = box.current!;
    // The canvas takes no CSS: bars and axes get the theme's colours as values.
    const style = getComputedStyle(el);
    const ink = style.color;
    const { data, series } = chartData(histogram, (l) => style.getPropertyValue(`--${l}`).trim());
    const [from, to] = [Date.parse(histogram.since) / 1000, Date.parse(histogram.until) / 1000];
    const grid = { stroke: 'rgba(128,128,128,0.15)' };
    const u = new uPlot({
      width: el.clientWidth || 600,
      height: HEIGHT,
      series,
      legend: { show: false },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      scales: { x: { time: true, range: () => [from, to] }, y: { range: (_u, _min, max) => [0, Math.max(1, Math.ceil(max * 1.1))] } },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      axes: [{ stroke: ink, grid, space: 90 }, { stroke: ink, grid, size: 50 }],
      hooks: {
        setSelect: [(p) => {
          if (p.select.width < 3) return;
          const a = p.posToVal(p.select.left, 'x');
          const b = p.posToVal(p.select.left + p.select.width, 'x');
          p.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          zoom.current(Math.round(a * 1000), Math.round(b * 1000));
        }],
      },
    }, data, el);
    const resize = new ResizeObserver(() => u.setSize({ width: el.clientWidth, height: HEIGHT }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
    };
  }, [histogram]);
  const totals = Object.fromEntries(LEVELS.map((l) => [l, histogram.buckets.reduce((n, b) => n + (b.levels?.[l] ?? 0), 0)]));
  const total = histogram.buckets.reduce((n, b) => n + b.total, 0);
  return (
    <section class="chart" aria-label="logs over time">
      <div class="chart-legend">
        <span>{total.toLocaleString('en')} logs, per {histogram.step}{histogram.device_id ? ` of ${histogram.device_id}` : ''}</span>
        {!histogram.device_id && LEVELS.map((l) => (
          <span key={l} class="legend-item"><i class={`swatch lvl-${l}`} />{l} {totals[l].toLocaleString('en')}</span>
        ))}
        <span class="hint">drag across the chart to zoom</span>
      </div>
      <div ref={box} class="chart-plot" />
    </section>
  );
}
