//! Training curves: one line per run of one [`Metric`] against the iteration or epoch.
//!
//! This is the form of Vorontsov et al.'s Figure 1 (copy-task accuracy per spectral margin), Figure 4
//! (per strength of the soft constraints), Figure 5 (adding-task MSE with the trivial baseline
//! `1/6`) and Figure 6 (sequential MNIST loss). The abscissa is the epoch when every plotted record
//! carries one, otherwise the iteration.

use super::figure::{self, DrawResult, Figure, Legend, Sample, Theme, XAxis};
use crate::error::{Error, Result};
use crate::train::metrics::EvalRecord;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// A scalar that an [`EvalRecord`] may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Evaluation loss (always present).
    Loss,
    /// Mean training loss since the previous record.
    TrainLoss,
    /// Evaluation accuracy (a fraction in `[0, 1]`).
    Accuracy,
    /// Evaluation mean squared error.
    Mse,
    /// Bits per character.
    Bpc,
}

impl Metric {
    /// Every metric, in the order `plot_run_dir` draws them.
    pub const ALL: [Metric; 5] = [Metric::Loss, Metric::TrainLoss, Metric::Accuracy, Metric::Mse, Metric::Bpc];

    /// The record's value, when it has one.
    pub fn value(self, r: &EvalRecord) -> Option<f64> {
        match self {
            Metric::Loss => Some(r.loss),
            Metric::TrainLoss => r.train_loss,
            Metric::Accuracy => r.accuracy,
            Metric::Mse => r.mse,
            Metric::Bpc => r.bpc,
        }
    }

    /// The JSON field name, also used as the file stem by `plot_run_dir`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::TrainLoss => "train_loss",
            Metric::Accuracy => "accuracy",
            Metric::Mse => "mse",
            Metric::Bpc => "bpc",
        }
    }

    /// The y-axis label.
    pub fn axis_label(self) -> &'static str {
        match self {
            Metric::Loss => "evaluation loss",
            Metric::TrainLoss => "training loss",
            Metric::Accuracy => "accuracy",
            Metric::Mse => "mean squared error",
            Metric::Bpc => "bits per character",
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::invalid("metric", s, "expected one of loss, train_loss, accuracy, mse, bpc"))
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A horizontal reference line, drawn dashed: the score of a trivial predictor, say.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// Height of the line, in the metric's units.
    pub value: f64,
    /// Legend entry (e.g. `"baseline (10 ln 8 / (T+20))"`).
    pub label: String,
}

/// Options of [`plot_curves`].
#[derive(Clone, Debug, PartialEq)]
pub struct CurveOptions {
    /// Canvas size in pixels (width, height).
    pub size: (u32, u32),
    /// Logarithmic y axis (non-positive values are then skipped).
    pub log_y: bool,
    /// Optional dashed horizontal baseline.
    pub baseline: Option<Baseline>,
}

impl Default for CurveOptions {
    fn default() -> Self {
        CurveOptions { size: super::DEFAULT_SIZE, log_y: false, baseline: None }
    }
}

/// Draws `metric` for every cell of several runs (label, one record list per seed) as the median
/// over the runs with a shaded band from their minimum to their maximum, into
/// `<out_dir>/<stem>.{svg,png}`. At each abscissa the median and range are taken over the runs
/// that have a usable value there (a diverged run stops contributing where its records stop).
/// Cells of one run are drawn as a plain line. Returns the paths written (SVG, then PNG).
pub fn plot_curve_bands(
    cells: &[(String, Vec<Vec<EvalRecord>>)],
    metric: Metric,
    out_dir: &Path,
    stem: &str,
    title: &str,
    opts: &CurveOptions,
) -> Result<Vec<PathBuf>> {
    let usable = |v: f64| v.is_finite() && (!opts.log_y || v > 0.0);
    let x_axis =
        XAxis::choose(cells.iter().flat_map(|(_, runs)| runs.iter().flatten().filter(|r| metric.value(r).is_some())));
    let mut runs = Vec::new();
    let mut bands = Vec::new();
    for (label, seeds) in cells {
        let mut at: std::collections::BTreeMap<u64, (f64, Vec<f64>)> = std::collections::BTreeMap::new();
        for r in seeds.iter().flatten() {
            let x = x_axis.value(r);
            if let Some(v) = metric.value(r).filter(|&v| usable(v))
                && x.is_finite()
            {
                at.entry(x.to_bits()).or_insert((x, Vec::new())).1.push(v);
            }
        }
        let mut median = Vec::new();
        let mut band = Vec::new();
        for (x, vals) in at.into_values() {
            if let Some((m, lo, hi)) = crate::experiments::seeds::median_range(&vals) {
                median.push((x, m));
                band.push((x, lo, hi));
            }
        }
        median.sort_by(|a, b| a.0.total_cmp(&b.0));
        band.sort_by(|a, b| a.0.total_cmp(&b.0));
        let label = if seeds.len() > 1 { format!("{label} (median of {})", seeds.len()) } else { label.clone() };
        runs.push((label, median));
        bands.push(if seeds.len() > 1 { band } else { Vec::new() });
    }
    draw_series(runs, bands, metric, x_axis, out_dir, stem, title, opts)
}

/// Draws `metric` for every run (label, records) as one line, into `<out_dir>/<stem>.{svg,png}`.
///
/// Records without the metric (or with a non-finite value, or a non-positive one on a log axis)
/// are skipped, and so are runs left with no points. It is an error if no run has the metric.
/// Returns the paths written (SVG, then PNG).
pub fn plot_curves(
    runs: &[(String, Vec<EvalRecord>)],
    metric: Metric,
    out_dir: &Path,
    stem: &str,
    title: &str,
    opts: &CurveOptions,
) -> Result<Vec<PathBuf>> {
    let usable = |v: f64| v.is_finite() && (!opts.log_y || v > 0.0);
    let x_axis = XAxis::choose(runs.iter().flat_map(|(_, recs)| recs.iter().filter(|r| metric.value(r).is_some())));
    let mut series = Vec::new();
    for (label, recs) in runs {
        let mut points: Vec<(f64, f64)> = recs
            .iter()
            .filter_map(|r| metric.value(r).filter(|&v| usable(v)).map(|v| (x_axis.value(r), v)))
            .filter(|(x, _)| x.is_finite())
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push((label.clone(), points));
    }
    let bands = vec![Vec::new(); series.len()];
    draw_series(series, bands, metric, x_axis, out_dir, stem, title, opts)
}

/// Draws prepared series (label, sorted points) with optional bands `(x, lo, hi)` per series.
#[allow(clippy::too_many_arguments)]
fn draw_series(
    series: Vec<(String, Vec<(f64, f64)>)>,
    bands: Vec<Vec<(f64, f64, f64)>>,
    metric: Metric,
    x_axis: XAxis,
    out_dir: &Path,
    stem: &str,
    title: &str,
    opts: &CurveOptions,
) -> Result<Vec<PathBuf>> {
    let usable = |v: f64| v.is_finite() && (!opts.log_y || v > 0.0);
    let runs = series.len();
    let (series, bands): (Vec<_>, Vec<_>) = series.into_iter().zip(bands).filter(|((_, p), _)| !p.is_empty()).unzip();
    if series.is_empty() {
        let what = if opts.log_y { format!("a positive {metric} value") } else { format!("a {metric} value") };
        return Err(Error::invalid(
            "metric",
            metric,
            format!("none of the {runs} run(s) has {what} to plot (the field is absent from their records)"),
        ));
    }
    if let Some(b) = &opts.baseline
        && !usable(b.value)
    {
        let reason = if opts.log_y { "must be finite and positive on a log axis" } else { "must be finite" };
        return Err(Error::invalid("baseline", b.value, reason));
    }

    let all = series.iter().flat_map(|(_, p)| p.iter());
    let x_ext = figure::extent(all.clone().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let x_range = if x_ext.1 > x_ext.0 { x_ext } else { (x_ext.0 - 0.5, x_ext.1 + 0.5) };
    let baseline_value = opts.baseline.as_ref().map(|b| b.value);
    let band_values = bands.iter().flatten().flat_map(|&(_, lo, hi)| [lo, hi]);
    let y_ext = figure::extent(all.map(|p| p.1).chain(baseline_value).chain(band_values)).unwrap_or((0.0, 1.0));
    let y_range = if opts.log_y {
        figure::padded_log(y_ext, 0.04)
    } else if metric == Metric::Accuracy && y_ext.0 >= 0.0 && y_ext.1 <= 1.0 {
        (-0.02, 1.02)
    } else {
        figure::padded(y_ext, 0.05)
    };

    let fig = CurveFigure {
        title,
        x_label: x_axis.label(),
        y_label: metric.axis_label(),
        series,
        bands,
        baseline: opts.baseline.as_ref(),
        x_range,
        y_range,
        log_y: opts.log_y,
    };
    figure::render(&fig, out_dir, stem, opts.size)
}

/// The dashed line of the trivial predictor.
const BASELINE_GREY: RGBColor = RGBColor(90, 90, 90);

/// A prepared curve plot.
struct CurveFigure<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: Vec<(String, Vec<(f64, f64)>)>,
    /// Per series: `(x, lo, hi)` of a shaded band (empty: none).
    bands: Vec<Vec<(f64, f64, f64)>>,
    baseline: Option<&'a Baseline>,
    x_range: (f64, f64),
    y_range: (f64, f64),
    log_y: bool,
}

impl Figure for CurveFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, theme: &Theme) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let mut entries: Vec<(&str, Sample)> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, (l, _))| (l.as_str(), Sample::Line(figure::series_colour(i))))
            .collect();
        if let Some(b) = self.baseline {
            entries.push((b.label.as_str(), Sample::Dashed(BASELINE_GREY)));
        }
        // The legend sits to the right of the plot, in as many columns as the height needs, unless
        // that would leave the plot less than 55 % of the width (long labels): then below it.
        let body = theme.titled(root, self.title)?;
        let (w, h) = body.dim_in_pixel();
        let beside = Legend::beside(theme, entries.clone(), h);
        let (plot, legend, area) = if f64::from(beside.width()) <= 0.45 * f64::from(w) {
            let (plot, side) = body.split_horizontally(w.saturating_sub(beside.width()));
            (plot, beside, side)
        } else {
            let below = Legend::below(theme, entries, w);
            let (plot, strip) = body.split_vertically(h.saturating_sub(below.height()));
            (plot, below, strip.margin(0, 0, theme.px(86.0), 0))
        };
        let (y0, y1) = self.y_range;
        if self.log_y {
            let (major, minor, decades) = figure::log_ticks(y0, y1);
            let coord = (y0..y1).log_scale().with_key_points(major).with_light_points(minor);
            self.draw_on(&plot, theme, coord, &|v| figure::log_tick_label(*v, decades))?;
        } else {
            self.draw_on(&plot, theme, y0..y1, &figure::tick_label)?;
        }
        legend.draw(&area, theme)
    }
}

impl CurveFigure<'_> {
    /// Draws on a chart whose y coordinate is `y_spec` with tick labels `y_fmt`.
    fn draw_on<DB, YS>(
        &self,
        root: &DrawingArea<DB, Shift>,
        theme: &Theme,
        y_spec: YS,
        y_fmt: &dyn Fn(&f64) -> String,
    ) -> DrawResult<DB>
    where
        DB: DrawingBackend,
        YS: AsRangedCoord<Value = f64>,
        YS::CoordDescType: ValueFormatter<f64>,
    {
        let (x0, x1) = self.x_range;
        let mut chart = theme.line_chart(root).build_cartesian_2d(x0..x1, y_spec)?;
        let mut mesh = chart.configure_mesh();
        theme.line_mesh(&mut mesh, self.x_label, self.y_label);
        mesh.y_label_formatter(y_fmt).draw()?;

        if let Some(b) = self.baseline {
            let style = BASELINE_GREY.stroke_width(theme.px(1.6));
            let (dash, gap) = (theme.px(9.0), theme.px(6.0));
            chart.draw_series(DashedLineSeries::new([(x0, b.value), (x1, b.value)], dash, gap, style))?;
        }

        for (i, band) in self.bands.iter().enumerate().filter(|(_, b)| b.len() >= 2) {
            let fill = figure::series_colour(i).mix(0.18).filled();
            let outline: Vec<(f64, f64)> =
                band.iter().map(|&(x, lo, _)| (x, lo)).chain(band.iter().rev().map(|&(x, _, hi)| (x, hi))).collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, fill)))?;
        }
        for (i, (_, points)) in self.series.iter().enumerate() {
            let colour = figure::series_colour(i);
            let style = colour.stroke_width(theme.line_width());
            chart.draw_series(LineSeries::new(points.iter().copied(), style))?;
            if points.len() <= 30 {
                let r = theme.px(3.5);
                chart.draw_series(points.iter().map(|&p| Circle::new(p, r, colour.filled())))?;
            }
        }

        Ok(())
    }
}
