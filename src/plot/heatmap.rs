//! Gradient-norm heatmap (Vorontsov et al., Figure 2).
//!
//! With `--record-grad-norms` a record carries `g_t = ‖∂L/∂h_t‖` for `t = 1..T` (mean over one
//! training batch). The heatmap puts the training iteration on the abscissa, the time step `t` on
//! the ordinate, and colours each cell by `log g_t` (viridis; a colour bar gives the scale). With
//! [`HeatmapOptions::normalize`] each iteration's column is first divided by `max_t g_t`, as in the
//! paper ("gradient norms are normalized across the time dimension"), so the colour shows how far
//! back in time the gradient survives rather than its overall size.
//!
//! Many iterations or long sequences are shown at a bounded resolution: consecutive columns (rows)
//! are merged into one cell holding the geometric mean of their positive values, so a figure has at
//! most [`MAX_COLUMNS`] x [`MAX_ROWS`] cells and the SVG stays a few megabytes at worst. Cells with
//! no positive finite value are left grey.

use super::figure::{self, DrawResult, Figure, Theme};
use crate::error::{Error, Result};
use crate::train::metrics::EvalRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Most cell columns drawn; more recorded iterations are merged.
pub const MAX_COLUMNS: usize = 200;
/// Most cell rows drawn; longer sequences are merged.
pub const MAX_ROWS: usize = 128;

/// Options of [`plot_grad_norm_heatmap`].
#[derive(Clone, Debug, PartialEq)]
pub struct HeatmapOptions {
    /// Canvas size in pixels (width, height).
    pub size: (u32, u32),
    /// Divide each iteration's norms by their maximum over time steps (the paper's normalization).
    pub normalize: bool,
}

impl Default for HeatmapOptions {
    fn default() -> Self {
        HeatmapOptions { size: super::DEFAULT_SIZE, normalize: true }
    }
}

/// Draws the `‖∂L/∂h_t‖` heatmap of one run into `<out_dir>/<stem>.{svg,png}`.
///
/// Uses the records that have a non-empty `grad_norms`; sequences of different lengths are
/// allowed (missing steps are grey). It is an error if no record has a positive finite norm.
pub fn plot_grad_norm_heatmap(
    records: &[EvalRecord],
    out_dir: &Path,
    stem: &str,
    title: &str,
    opts: &HeatmapOptions,
) -> Result<Vec<PathBuf>> {
    let grid = Grid::build(records, opts.normalize)?;
    let fig = HeatmapFigure { title, grid, normalize: opts.normalize };
    figure::render(&fig, out_dir, stem, opts.size)
}

/// One coloured cell: `[x0, x1] x [y0, y1]` in (iteration, time step) units.
struct Cell {
    x: (f64, f64),
    y: (f64, f64),
    value: f64,
}

/// The binned cells and the value range of the colour scale.
struct Grid {
    cells: Vec<Cell>,
    x_range: (f64, f64),
    steps: usize,
    v_range: (f64, f64),
}

impl Grid {
    fn build(records: &[EvalRecord], normalize: bool) -> Result<Grid> {
        let mut cols: Vec<(f64, Vec<f64>)> = records
            .iter()
            .filter_map(|r| r.grad_norms.as_ref().filter(|g| !g.is_empty()).map(|g| (r.iter as f64, g.clone())))
            .collect();
        cols.sort_by(|a, b| a.0.total_cmp(&b.0));
        let positive = |v: &f64| v.is_finite() && *v > 0.0;
        if !cols.iter().any(|(_, g)| g.iter().any(positive)) {
            let with = cols.len();
            return Err(Error::invalid(
                "records",
                format!("{} record(s)", records.len()),
                if with == 0 {
                    "none has grad_norms; train with --record-grad-norms to record them".to_string()
                } else {
                    format!("the {with} record(s) with grad_norms hold no positive finite norm")
                },
            ));
        }
        if normalize {
            for (_, g) in &mut cols {
                let peak = g.iter().copied().filter(positive).fold(0.0, f64::max);
                if peak > 0.0 {
                    g.iter_mut().for_each(|v| *v /= peak);
                }
            }
        }

        // Each column spans the iterations since the previous evaluation and ends at its own, so the
        // x axis ends at the last evaluation (the first column is as wide as the first gap).
        let xs: Vec<f64> = cols.iter().map(|c| c.0).collect();
        let n = xs.len();
        let first_gap = if n > 1 { xs[1] - xs[0] } else { 1.0 };
        let mut edges = Vec::with_capacity(n + 1);
        edges.push(xs[0] - first_gap);
        edges.extend(xs.iter().copied());

        let steps = cols.iter().map(|c| c.1.len()).max().unwrap_or(0);
        let col_group = n.div_ceil(MAX_COLUMNS);
        let row_group = steps.div_ceil(MAX_ROWS);
        let mut cells = Vec::new();
        for c0 in (0..n).step_by(col_group) {
            let c1 = (c0 + col_group).min(n);
            for r0 in (0..steps).step_by(row_group) {
                let r1 = (r0 + row_group).min(steps);
                let (mut sum, mut count) = (0.0, 0usize);
                for (_, g) in &cols[c0..c1] {
                    for v in g.iter().take(r1).skip(r0).filter(|v| positive(v)) {
                        sum += v.ln();
                        count += 1;
                    }
                }
                if count > 0 {
                    // Time steps are 1-based: rows r0..r1 hold t = r0+1 ..= r1.
                    let y = (r0 as f64 + 0.5, r1 as f64 + 0.5);
                    cells.push(Cell { x: (edges[c0], edges[c1]), y, value: (sum / count as f64).exp() });
                }
            }
        }
        let (lo, hi) = figure::extent(cells.iter().map(|c| c.value)).unwrap_or((1.0, 1.0));
        // Normalized columns peak at exactly 1; binning can leave the top cell a little below.
        let hi = if normalize { 1.0 } else { hi };
        let lo = lo.min(hi);
        let v_range = if hi > lo { (lo, hi) } else { (hi / 10.0, hi) };
        let x_range = if edges[n] > edges[0] { (edges[0], edges[n]) } else { (edges[0] - 0.5, edges[0] + 0.5) };
        Ok(Grid { cells, x_range, steps, v_range })
    }

    /// The viridis colour of `v` on the log scale `v_range`.
    fn colour(&self, v: f64) -> RGBColor {
        let (lo, hi) = self.v_range;
        let f = ((v / lo).ln() / (hi / lo).ln()).clamp(0.0, 1.0);
        ViridisRGB::get_color(f)
    }
}

struct HeatmapFigure<'a> {
    title: &'a str,
    grid: Grid,
    normalize: bool,
}

impl Figure for HeatmapFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, theme: &Theme) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let body = theme.titled(root, self.title)?;
        let bar_width = theme.px(150.0);
        let (main, bar) = body.split_horizontally(body.dim_in_pixel().0.saturating_sub(bar_width));
        let (top, bottom, x_area) = (theme.px(10.0), theme.px(14.0), theme.px(58.0));
        let grid = &self.grid;

        let (x0, x1) = grid.x_range;
        let mut chart = ChartBuilder::on(&main)
            .margin_left(theme.px(14.0))
            .margin_right(theme.px(8.0))
            .margin_top(top)
            .margin_bottom(bottom)
            .x_label_area_size(x_area)
            .y_label_area_size(theme.px(86.0))
            .build_cartesian_2d(x0..x1, 0.5..grid.steps as f64 + 0.5)?;
        chart.plotting_area().fill(&RGBColor(225, 225, 225))?;
        chart.draw_series(
            grid.cells.iter().map(|c| Rectangle::new([(c.x.0, c.y.0), (c.x.1, c.y.1)], grid.colour(c.value).filled())),
        )?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("training iteration")
            .y_desc("time step t")
            .axis_desc_style(theme.axis_desc_font())
            .label_style(theme.tick_font())
            .axis_style(theme.axis_style())
            .set_all_tick_mark_size(theme.px(6.0))
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&figure::tick_label)
            .y_label_formatter(&figure::tick_label)
            .draw()?;

        // The colour bar: a log axis spanning the colour scale, filled with thin stripes.
        let (lo, hi) = grid.v_range;
        let (major, _, decades) = figure::log_ticks(lo, hi);
        let mut scale = ChartBuilder::on(&bar)
            .margin_left(theme.px(16.0))
            .margin_right(theme.px(10.0))
            .margin_top(top)
            .margin_bottom(bottom)
            .x_label_area_size(x_area)
            .right_y_label_area_size(theme.px(98.0))
            .build_cartesian_2d(0.0..1.0, (lo..hi).log_scale().with_key_points(major))?;
        const STRIPES: usize = 160;
        let ratio = hi / lo;
        scale.draw_series((0..STRIPES).map(|k| {
            let at = |f: f64| lo * ratio.powf(f);
            let (a, b) = (at(k as f64 / STRIPES as f64), at((k + 1) as f64 / STRIPES as f64));
            let c = ViridisRGB::get_color((k as f64 + 0.5) / STRIPES as f64);
            Rectangle::new([(0.0, a), (1.0, b)], c.filled())
        }))?;
        scale.plotting_area().draw(&Rectangle::new([(0.0, lo), (1.0, hi)], theme.axis_style()))?;
        let desc = if self.normalize { "‖∂L/∂hₜ‖ / maxₜ ‖∂L/∂hₜ‖" } else { "‖∂L/∂hₜ‖" };
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(desc)
            .axis_desc_style(theme.axis_desc_font())
            .label_style(theme.tick_font())
            .axis_style(theme.axis_style())
            .set_all_tick_mark_size(theme.px(6.0))
            .y_label_formatter(&|v| figure::log_tick_label(*v, decades))
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(iter: usize, g: Vec<f64>) -> EvalRecord {
        EvalRecord { iter, grad_norms: Some(g), ..Default::default() }
    }

    #[test]
    fn grid_normalizes_and_bins() {
        let recs: Vec<EvalRecord> = (0..500).map(|i| rec(i * 2, vec![1.0, 2.0, 4.0, 0.0])).collect();
        let grid = Grid::build(&recs, true).unwrap();
        // 500 columns merge three at a time into 167; four rows, one of them all zero (grey).
        assert_eq!(grid.cells.len(), 500usize.div_ceil(3) * 3);
        assert_eq!(grid.steps, 4);
        assert!((grid.v_range.0 - 0.25).abs() < 1e-12 && (grid.v_range.1 - 1.0).abs() < 1e-12);
        // Columns end at their evaluations: the axis ends at the last one (998).
        assert_eq!(grid.x_range, (-2.0, 998.0));
    }

    #[test]
    fn grid_without_norms_is_an_error() {
        let recs = vec![EvalRecord::default(), rec(5, vec![0.0, f64::NAN])];
        let err = Grid::build(&recs, false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("no positive finite norm"), "{err}");
        let err = Grid::build(&[EvalRecord::default()], false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--record-grad-norms"), "{err}");
    }
}
