//! Singular-value evolution of the recurrent matrix (Vorontsov et al., Figure 3).
//!
//! At every evaluation the record carries summary statistics of the singular values `σ_i` of `W`:
//! `sv_min = min_i σ_i`, `sv_max = max_i σ_i`, `sv_mean = (1/n) Σ_i σ_i` and `sv_std`, their
//! standard deviation. The figure draws the maximum in blue, the mean in green with a shaded
//! `mean ± std` band, the minimum in red, and a dashed grey reference at `σ = 1` (orthogonality).

use super::figure::{self, DrawResult, Figure, Legend, Sample, Theme, XAxis};
use crate::error::{Error, Result};
use crate::train::metrics::EvalRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Options of [`plot_singular_values`].
#[derive(Clone, Debug, PartialEq)]
pub struct SpectrumOptions {
    /// Canvas size in pixels (width, height).
    pub size: (u32, u32),
    /// Draw a dashed reference line at `σ = 1`.
    pub reference_one: bool,
}

impl Default for SpectrumOptions {
    fn default() -> Self {
        SpectrumOptions { size: super::DEFAULT_SIZE, reference_one: true }
    }
}

const MAX_COLOUR: RGBColor = RGBColor(31, 90, 200);
const MEAN_COLOUR: RGBColor = RGBColor(30, 150, 50);
const MIN_COLOUR: RGBColor = RGBColor(210, 35, 35);
/// The dashed reference line at sigma = 1.
const REFERENCE_GREY: RGBColor = RGBColor(120, 120, 120);

/// Draws the singular-value spread of one run into `<out_dir>/<stem>.{svg,png}`.
///
/// Each statistic is drawn from the records that have it (finite values only); the band needs both
/// `sv_mean` and `sv_std`. It is an error if no record has any of `sv_min`, `sv_mean`, `sv_max`.
/// The abscissa is the epoch when every record has one, otherwise the iteration.
pub fn plot_singular_values(
    records: &[EvalRecord],
    out_dir: &Path,
    stem: &str,
    title: &str,
    opts: &SpectrumOptions,
) -> Result<Vec<PathBuf>> {
    let x_axis = XAxis::choose(records.iter().filter(|r| has_spectrum(r)));
    let line = |f: fn(&EvalRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = records
            .iter()
            .filter_map(|r| f(r).map(|v| (x_axis.value(r), v)))
            .filter(|(x, v)| x.is_finite() && v.is_finite())
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts
    };
    let max = line(|r| r.sv_max);
    let mean = line(|r| r.sv_mean);
    let min = line(|r| r.sv_min);
    // (x, mean - std, mean + std)
    let mut band: Vec<(f64, f64, f64)> = records
        .iter()
        .filter_map(|r| Some((x_axis.value(r), r.sv_mean?, r.sv_std?)))
        .filter(|(x, m, s)| x.is_finite() && m.is_finite() && s.is_finite())
        .map(|(x, m, s)| (x, m - s.abs(), m + s.abs()))
        .collect();
    band.sort_by(|a, b| a.0.total_cmp(&b.0));
    if max.is_empty() && mean.is_empty() && min.is_empty() {
        return Err(Error::invalid(
            "records",
            format!("{} record(s)", records.len()),
            "none has finite singular-value statistics (sv_min, sv_mean, sv_max); \
             they are recorded for models with a recurrent matrix",
        ));
    }

    let xs = max.iter().chain(&mean).chain(&min).map(|p| p.0);
    let x_ext = figure::extent(xs).unwrap_or((0.0, 1.0));
    let x_range = if x_ext.1 > x_ext.0 { x_ext } else { (x_ext.0 - 0.5, x_ext.1 + 0.5) };
    let ys = max.iter().chain(&mean).chain(&min).map(|p| p.1);
    let band_ys = band.iter().flat_map(|b| [b.1, b.2]);
    let one = opts.reference_one.then_some(1.0);
    let y_ext = figure::extent(ys.chain(band_ys).chain(one)).unwrap_or((0.0, 1.0));
    let y_range = figure::padded(y_ext, 0.06);

    let fig = SpectrumFigure { title, x_label: x_axis.label(), max, mean, min, band, x_range, y_range, one };
    figure::render(&fig, out_dir, stem, opts.size)
}

fn has_spectrum(r: &EvalRecord) -> bool {
    r.sv_min.is_some() || r.sv_mean.is_some() || r.sv_max.is_some()
}

struct SpectrumFigure<'a> {
    title: &'a str,
    x_label: &'a str,
    max: Vec<(f64, f64)>,
    mean: Vec<(f64, f64)>,
    min: Vec<(f64, f64)>,
    band: Vec<(f64, f64, f64)>,
    x_range: (f64, f64),
    y_range: (f64, f64),
    one: Option<f64>,
}

impl Figure for SpectrumFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, theme: &Theme) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        // The legend sits to the right of the plot.
        let mean_label = if self.band.is_empty() { "mean" } else { "mean ± std" };
        let mut entries = vec![
            ("max", Sample::Line(MAX_COLOUR)),
            (mean_label, if self.band.is_empty() { Sample::Line(MEAN_COLOUR) } else { Sample::Band(MEAN_COLOUR) }),
            ("min", Sample::Line(MIN_COLOUR)),
        ];
        if self.one.is_some() {
            entries.push(("σ = 1", Sample::Dashed(REFERENCE_GREY)));
        }
        let body = theme.titled(root, self.title)?;
        let (w, h) = body.dim_in_pixel();
        let legend = Legend::beside(theme, entries, h);
        let (root, side) = body.split_horizontally(w.saturating_sub(legend.width()));
        legend.draw(&side, theme)?;
        let root = &root;
        let (x0, x1) = self.x_range;
        let (y0, y1) = self.y_range;
        let mut chart = theme.line_chart(root).build_cartesian_2d(x0..x1, y0..y1)?;
        let mut mesh = chart.configure_mesh();
        theme.line_mesh(&mut mesh, self.x_label, "singular values of W");
        mesh.y_label_formatter(&figure::tick_label).draw()?;

        let ref_style = REFERENCE_GREY.stroke_width(theme.px(1.4));
        if let Some(v) = self.one {
            let (dash, gap) = (theme.px(9.0), theme.px(6.0));
            chart.draw_series(DashedLineSeries::new([(x0, v), (x1, v)], dash, gap, ref_style))?;
        }

        let lw = theme.line_width();
        let markers = |pts: &[(f64, f64)]| pts.len() <= 30;
        let max_style = MAX_COLOUR.stroke_width(lw);
        chart.draw_series(LineSeries::new(self.max.iter().copied(), max_style))?;

        let shade = MEAN_COLOUR.mix(0.22).filled();
        if self.band.len() >= 2 {
            let outline: Vec<(f64, f64)> =
                self.band.iter().map(|b| (b.0, b.2)).chain(self.band.iter().rev().map(|b| (b.0, b.1))).collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, shade)))?;
        } else if let Some(&(x, lo, hi)) = self.band.first() {
            let style = MEAN_COLOUR.mix(0.5).stroke_width(theme.px(6.0));
            chart.draw_series(std::iter::once(PathElement::new(vec![(x, lo), (x, hi)], style)))?;
        }
        chart.draw_series(LineSeries::new(self.mean.iter().copied(), MEAN_COLOUR.stroke_width(lw)))?;
        chart.draw_series(LineSeries::new(self.min.iter().copied(), MIN_COLOUR.stroke_width(lw)))?;

        for (pts, colour) in [(&self.max, MAX_COLOUR), (&self.mean, MEAN_COLOUR), (&self.min, MIN_COLOUR)] {
            if markers(pts) {
                let r = theme.px(3.5);
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, r, colour.filled())))?;
            }
        }

        Ok(())
    }
}
