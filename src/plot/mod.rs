//! Plots (SVG and PNG) drawn from metrics files.
//!
//! Every public function draws one figure twice, as `<out_dir>/<stem>.svg` (vector, text kept as
//! text) and `<out_dir>/<stem>.png` (raster, text rendered with an embedded DejaVu Sans so no system
//! font library is needed), and returns the two paths. The figures follow Vorontsov et al. (2017):
//!
//! - [`plot_curves`] (and [`plot_curve_bands`]: the median of several seeds with a band): one line per run of a [`Metric`] against the training iteration, or against
//!   the epoch when every plotted record has one (Figures 1 and 4-6), with an optional dashed
//!   baseline such as the copy task's `10 ln 8 / (T + 20)` and an optional log-scale y axis.
//! - [`plot_singular_values`]: the spread of the recurrent matrix's singular values over training
//!   (Figure 3): the maximum (blue), the mean (green) with a `mean ± std` band, and the minimum (red).
//! - [`plot_grad_norm_heatmap`]: `‖∂L/∂h_t‖` for every recorded training iteration (abscissa) and
//!   time step `t` (ordinate) on a logarithmic colour scale with a colour bar (Figure 2). By default
//!   each iteration's column is divided by its maximum over `t`, as in the paper.
//! - [`plot_run_dir`]: the function behind `ortho-rnn plot RUN_DIR`: finds the metrics files of a run
//!   or sweep directory and draws every figure their fields support into `RUN_DIR/plots/`.
//!
//! Records whose value for a plotted quantity is absent or not finite are skipped; a figure with
//! nothing to draw is an error naming what was missing.

mod curves;
mod figure;
mod heatmap;
mod run_dir;
mod spectrum;

pub use curves::{Baseline, CurveOptions, Metric, plot_curve_bands, plot_curves};
pub use heatmap::{HeatmapOptions, plot_grad_norm_heatmap};
pub use run_dir::{PLOTS_SUBDIR, plot_run_dir, plot_run_dir_with_warnings};
pub use spectrum::{SpectrumOptions, plot_singular_values};

/// Default figure size in pixels (width, height); the SVG uses the same user units.
pub const DEFAULT_SIZE: (u32, u32) = (900, 600);
