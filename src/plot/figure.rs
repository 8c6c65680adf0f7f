//! What every figure shares: rendering one drawing to both backends, the embedded font, sizes that
//! scale with the canvas, the colour palette, tick labels, axis ranges and legend placement.
//!
//! A figure is a value implementing [`Figure`]; [`render`] draws it once on an SVG backend (kept as
//! a string) and once on an RGB buffer (encoded as PNG with the `png` crate); both files are written
//! atomically.

use crate::error::{Error, Result};
use crate::train::checkpoint::write_atomic;
use crate::train::metrics::EvalRecord;
use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::register_font;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/LICENSE-DejaVu.txt`), registered with
/// plotters' `ab_glyph` renderer so PNG text needs no fontconfig or freetype.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family every text element names; SVG viewers substitute their own sans-serif face.
pub(crate) const FONT: &str = "sans-serif";

/// Result of drawing on a backend `DB`.
pub(crate) type DrawResult<DB, T = ()> =
    std::result::Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure that can draw itself on any plotters backend.
pub(crate) trait Figure {
    /// Draws the whole figure on `root`, which covers the canvas.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, theme: &Theme) -> DrawResult<DB>;
}

/// Registers the embedded font once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok { Ok(()) } else { Err(Error::Unsupported("the embedded DejaVu Sans font could not be parsed".into())) }
}

/// Checks a file stem: non-empty and a plain file name (no directory parts).
fn check_stem(stem: &str) -> Result<()> {
    let plain = !stem.is_empty()
        && stem != "."
        && stem != ".."
        && !stem.contains(['/', '\\'])
        && Path::new(stem).file_name().is_some_and(|n| n == stem);
    if plain { Ok(()) } else { Err(Error::invalid("stem", format!("{stem:?}"), "must be a plain file name")) }
}

/// Checks a canvas size.
fn check_size((w, h): (u32, u32)) -> Result<()> {
    const MIN: (u32, u32) = (240, 180);
    const MAX: u32 = 16_384;
    if w < MIN.0 || h < MIN.1 || w > MAX || h > MAX {
        return Err(Error::invalid(
            "size",
            format!("{w}x{h}"),
            format!("width and height must lie in {}..={MAX} and {}..={MAX} pixels", MIN.0, MIN.1),
        ));
    }
    Ok(())
}

/// Draws `fig` into `<out_dir>/<stem>.svg` and `<out_dir>/<stem>.png`, creating `out_dir`.
pub(crate) fn render(fig: &impl Figure, out_dir: &Path, stem: &str, size: (u32, u32)) -> Result<Vec<PathBuf>> {
    check_stem(stem)?;
    check_size(size)?;
    ensure_font()?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let theme = Theme::new(size);

    let svg_path = out_dir.join(format!("{stem}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        fig.draw(&root, &theme).map_err(|e| drawing_error(&svg_path, e))?;
        root.present().map_err(|e| drawing_error(&svg_path, e))?;
    }
    write_atomic(&svg_path, svg.as_bytes())?;

    // Drawn into an RGB buffer and encoded here (the `png` crate) rather than by plotters' image
    // encoder, which pulls in the `image` crate with JPEG, BMP and GIF decoders the plots never use.
    let png_path = out_dir.join(format!("{stem}.png"));
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        fig.draw(&root, &theme).map_err(|e| drawing_error(&png_path, e))?;
        root.present().map_err(|e| drawing_error(&png_path, e))?;
    }
    write_atomic(&png_path, &encode_png(&rgb, size).map_err(|e| Error::io(&png_path, e))?)?;
    Ok(vec![svg_path, png_path])
}

/// `rgb` (8-bit RGB rows, top to bottom) as a PNG file's bytes.
fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(std::io::Error::other)?;
    writer.write_image_data(rgb).map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    Ok(bytes)
}

fn drawing_error<E: std::error::Error + Send + Sync>(path: &Path, e: DrawingAreaErrorKind<E>) -> Error {
    Error::io(path, std::io::Error::other(format!("drawing the figure failed: {e}")))
}

/// Pixel sizes of text, lines and margins, scaled with the canvas relative to [`super::DEFAULT_SIZE`].
pub(crate) struct Theme {
    scale: f64,
}

impl Theme {
    fn new((w, h): (u32, u32)) -> Self {
        let (dw, dh) = super::DEFAULT_SIZE;
        let scale = (f64::from(w) / f64::from(dw)).min(f64::from(h) / f64::from(dh)).clamp(0.4, 8.0);
        Theme { scale }
    }

    /// `v` pixels at the default size, scaled.
    pub(crate) fn px(&self, v: f64) -> u32 {
        (v * self.scale).round().max(1.0) as u32
    }

    /// Same as [`Theme::px`], as `i32`.
    pub(crate) fn ipx(&self, v: f64) -> i32 {
        self.px(v) as i32
    }

    pub(crate) fn title_font(&self) -> TextStyle<'static> {
        (FONT, f64::from(self.px(26.0))).into_font().style(FontStyle::Bold).color(&BLACK)
    }

    pub(crate) fn axis_desc_font(&self) -> TextStyle<'static> {
        (FONT, f64::from(self.px(21.0))).into_font().color(&BLACK)
    }

    pub(crate) fn tick_font(&self) -> TextStyle<'static> {
        (FONT, f64::from(self.px(17.5))).into_font().color(&RGBColor(40, 40, 40))
    }

    pub(crate) fn legend_font(&self) -> TextStyle<'static> {
        (FONT, f64::from(self.px(17.5))).into_font().color(&BLACK)
    }

    /// Stroke width of data lines.
    pub(crate) fn line_width(&self) -> u32 {
        self.px(2.2)
    }

    /// The style shared by every axis mesh: light grey grid, dark axes, formatted ticks.
    pub(crate) fn grid_bold(&self) -> ShapeStyle {
        RGBColor(215, 215, 215).stroke_width(1)
    }

    pub(crate) fn grid_light(&self) -> ShapeStyle {
        RGBColor(236, 236, 236).stroke_width(1)
    }

    pub(crate) fn axis_style(&self) -> ShapeStyle {
        RGBColor(60, 60, 60).stroke_width(self.px(1.2))
    }

    /// Draws `title` centred over the whole canvas (not over the plot beside a legend, where a long
    /// title was cut off at the left edge) and returns the area below it.
    pub(crate) fn titled<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        title: &str,
    ) -> DrawResult<DB, DrawingArea<DB, Shift>> {
        root.margin(self.px(10.0), 0, 0, 0).titled(title, self.title_font())
    }

    /// The chart builder of a line chart (curves, spectra): the theme's margins and label areas.
    pub(crate) fn line_chart<'a, 'b, DB: DrawingBackend>(
        &self,
        root: &'a DrawingArea<DB, Shift>,
    ) -> ChartBuilder<'a, 'b, DB> {
        let mut builder = ChartBuilder::on(root);
        builder
            .margin(self.px(14.0))
            .margin_right(self.px(30.0))
            .x_label_area_size(self.px(58.0))
            .y_label_area_size(self.px(86.0));
        builder
    }

    /// Styles the mesh of a line chart (curves, spectra): axis descriptions, the theme's grid, fonts
    /// and axes, 8 ticks a side, short labels on the x axis. The caller sets the y labels' format
    /// and draws.
    pub(crate) fn line_mesh<'a, 'b, X, Y, YT, DB>(
        &self,
        mesh: &mut MeshStyle<'a, 'b, X, Y, DB>,
        x_desc: &str,
        y_desc: &str,
    ) where
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = YT> + ValueFormatter<YT>,
        DB: DrawingBackend,
    {
        mesh.x_desc(x_desc)
            .y_desc(y_desc)
            .axis_desc_style(self.axis_desc_font())
            .label_style(self.tick_font())
            .bold_line_style(self.grid_bold())
            .light_line_style(self.grid_light())
            .axis_style(self.axis_style())
            .max_light_lines(0)
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&tick_label);
    }
}

/// How a legend entry's sample line is drawn.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sample {
    /// A solid line in the series colour.
    Line(RGBColor),
    /// A dashed line (the trivial predictor, a reference value).
    Dashed(RGBColor),
    /// A solid line over a shaded band (mean ± std).
    Band(RGBColor),
}

/// A legend drawn beside or below the plot, never over it. Beside: the entries fill a column from
/// the top, and further columns are added when the canvas height runs out; below: as many columns
/// as the width holds.
pub(crate) struct Legend<'a> {
    entries: Vec<(&'a str, Sample)>,
    rows: usize,
    columns: usize,
    col_width: u32,
    row_height: u32,
    top: u32,
}

impl<'a> Legend<'a> {
    /// Lays out `entries` in columns beside a plot `height` pixels tall.
    pub(crate) fn beside(theme: &Theme, entries: Vec<(&'a str, Sample)>, height: u32) -> Self {
        let (row_height, top) = (theme.px(25.0), theme.px(60.0));
        let fit = (height.saturating_sub(top + theme.px(20.0)) / row_height).max(1) as usize;
        let columns = entries.len().div_ceil(fit).max(1);
        let rows = entries.len().div_ceil(columns);
        let col_width = Self::column_width(theme, &entries);
        Legend { entries, rows, columns, col_width, row_height, top }
    }

    /// Lays out `entries` in as many columns as fit in `width` pixels, below a plot.
    pub(crate) fn below(theme: &Theme, entries: Vec<(&'a str, Sample)>, width: u32) -> Self {
        let col_width = Self::column_width(theme, &entries);
        let columns =
            ((width.saturating_sub(theme.px(40.0)) / col_width.max(1)) as usize).clamp(1, entries.len().max(1));
        let rows = entries.len().div_ceil(columns);
        Legend { entries, rows, columns, col_width, row_height: theme.px(25.0), top: theme.px(4.0) }
    }

    /// A column's width: the sample, a gap and the longest label.
    fn column_width(theme: &Theme, entries: &[(&str, Sample)]) -> u32 {
        // DejaVu Sans advances about 0.55 em per character on average; 0.6 leaves room for wide ones.
        let longest = entries.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0) as f64;
        theme.px(26.0 + 8.0 + 22.0 + 17.5 * 0.6 * longest)
    }

    /// Height of the legend's area when it is laid out [`Legend::below`] a plot.
    pub(crate) fn height(&self) -> u32 {
        self.top * 2 + self.row_height * self.rows as u32
    }

    /// Width of the legend's area.
    pub(crate) fn width(&self) -> u32 {
        self.col_width * self.columns as u32
    }

    /// Draws the legend on `area` (the strip beside the plot, [`Legend::width`] wide, or the strip
    /// below it, [`Legend::height`] tall).
    pub(crate) fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, theme: &Theme) -> DrawResult<DB> {
        let (w, gap) = (theme.ipx(26.0), theme.ipx(8.0));
        let half_font = theme.ipx(17.5 * 0.6);
        for (i, (label, sample)) in self.entries.iter().enumerate() {
            let (col, row) = ((i / self.rows) as i32, (i % self.rows) as i32);
            let x = col * self.col_width as i32;
            let y = self.top as i32 + row * self.row_height as i32 + self.row_height as i32 / 2;
            match *sample {
                Sample::Band(c) => {
                    let h = theme.ipx(7.0);
                    area.draw(&Rectangle::new([(x, y - h), (x + w, y + h)], c.mix(0.22).filled()))?;
                    area.draw(&PathElement::new(vec![(x, y), (x + w, y)], c.stroke_width(theme.line_width())))?;
                }
                Sample::Line(c) => {
                    area.draw(&PathElement::new(vec![(x, y), (x + w, y)], c.stroke_width(theme.line_width())))?
                }
                Sample::Dashed(c) => {
                    let style = c.stroke_width(theme.px(1.6));
                    area.draw(&PathElement::new(vec![(x, y), (x + w * 2 / 5, y)], style))?;
                    area.draw(&PathElement::new(vec![(x + w * 3 / 5, y), (x + w, y)], style))?;
                }
            }
            area.draw(&Text::new(label.to_string(), (x + w + gap, y - half_font), theme.legend_font()))?;
        }
        Ok(())
    }
}

/// Tableau 10: distinct, print-friendly colours for up to ten runs (then they repeat).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `i`-th series colour.
pub(crate) fn series_colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Tick label: plain decimals for moderate magnitudes, `2.5e-4` style otherwise, no trailing zeros.
pub(crate) fn tick_label(v: &f64) -> String {
    let v = *v;
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { format!("{v}") };
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((mant, exp)) => format!("{}e{exp}", trim_zeros(mant)),
            None => s,
        };
    }
    let decimals = (5 - a.log10().floor() as i32).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

/// Ticks for a log axis over positive `[lo, hi]`: (labelled, unlabelled grid) values, and whether
/// the labelled ones are whole decades (then labelled `10⁻³`-style, see [`log_tick_label`]).
///
/// Three or more decades: the decades (at most eight, thinned evenly); fewer: `1, 2, 5 x 10^k`, or
/// for very narrow ranges five points spaced evenly on the log scale.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>, bool) {
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    let (k0, k1) = ((lo.log10() - 1e-9).ceil() as i32, (hi.log10() + 1e-9).floor() as i32);
    let multiples = |ms: &[f64]| -> Vec<f64> {
        (k0 - 1..=k1 + 1).flat_map(|k| ms.iter().map(move |m| m * 10f64.powi(k))).filter(within).collect()
    };
    if k1 - k0 >= 2 {
        let step = ((k1 - k0 + 1) as usize).div_ceil(8) as i32;
        let major: Vec<f64> = (k0..=k1).filter(|k| (k - k0) % step == 0).map(|k| 10f64.powi(k)).collect();
        let minor = if step == 1 {
            multiples(&[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
        } else {
            (k0..=k1).filter(|k| (k - k0) % step != 0).map(|k| 10f64.powi(k)).collect()
        };
        return (major, minor, true);
    }
    let major = multiples(&[1.0, 2.0, 5.0]);
    let minor = multiples(&[3.0, 4.0, 6.0, 7.0, 8.0, 9.0]);
    if major.len() >= 3 {
        return (major, minor, false);
    }
    let even = (0..5)
        .map(|i| {
            let v = lo * (hi / lo).powf(f64::from(i) / 4.0);
            let scale = 10f64.powi(v.log10().floor() as i32 - 1);
            (v / scale).round() * scale
        })
        .filter(within)
        .collect();
    (even, Vec::new(), false)
}

/// Tick label on a log axis: `10⁻³` for decades when `decades`, [`tick_label`] otherwise.
pub(crate) fn log_tick_label(v: f64, decades: bool) -> String {
    let e = v.log10().round();
    if !decades || (v / 10f64.powf(e) - 1.0).abs() > 1e-6 {
        return tick_label(&v);
    }
    const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let e = e as i64;
    let digits: String = e.unsigned_abs().to_string().bytes().map(|d| SUP[usize::from(d - b'0')]).collect();
    format!("10{}{digits}", if e < 0 { "⁻" } else { "" })
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { s }
}

/// What the abscissa of a curve measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum XAxis {
    Iteration,
    Epoch,
}

impl XAxis {
    /// Epochs when every record has one (and there is at least one record), iterations otherwise.
    pub(crate) fn choose<'a>(records: impl IntoIterator<Item = &'a EvalRecord>) -> XAxis {
        let mut any = false;
        for r in records {
            any = true;
            if r.epoch.is_none_or(|e| !e.is_finite()) {
                return XAxis::Iteration;
            }
        }
        if any { XAxis::Epoch } else { XAxis::Iteration }
    }

    pub(crate) fn value(self, r: &EvalRecord) -> f64 {
        match self {
            XAxis::Epoch => r.epoch.unwrap_or(r.iter as f64),
            XAxis::Iteration => r.iter as f64,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            XAxis::Epoch => "epoch",
            XAxis::Iteration => "training iteration",
        }
    }
}

/// `[min, max]` of `xs` (finite values only), `None` when there are none.
pub(crate) fn extent(xs: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    xs.into_iter().filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// A linear axis range around `[lo, hi]` with `pad` of the span added on each side; a zero span
/// is widened so the axis stays drawable.
pub(crate) fn padded((lo, hi): (f64, f64), pad: f64) -> (f64, f64) {
    let span = hi - lo;
    if span > 0.0 {
        (lo - pad * span, hi + pad * span)
    } else {
        let d = (lo.abs() * 0.1).max(1e-3);
        (lo - d, hi + d)
    }
}

/// A log axis range around positive `[lo, hi]`, padded by `pad` of the span in decades.
pub(crate) fn padded_log((lo, hi): (f64, f64), pad: f64) -> (f64, f64) {
    let decades = (hi / lo).log10();
    if decades > 0.0 {
        let f = 10f64.powf(pad * decades);
        (lo / f, hi * f)
    } else {
        (lo / 2.0, hi * 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(&0.0), "0");
        assert_eq!(tick_label(&0.5), "0.5");
        assert_eq!(tick_label(&0.30000000000000004), "0.3");
        assert_eq!(tick_label(&1500.0), "1500");
        assert_eq!(tick_label(&0.0012), "0.0012");
        assert_eq!(tick_label(&1e-4), "1e-4");
        assert_eq!(tick_label(&2.5e-5), "2.5e-5");
        assert_eq!(tick_label(&200000.0), "2e5");
        assert_eq!(tick_label(&-0.25), "-0.25");
    }

    #[test]
    fn log_axis_ticks() {
        let (major, minor, decades) = log_ticks(2e-5, 0.3);
        assert!(decades);
        assert_eq!(major.len(), 4, "{major:?}");
        assert!(!minor.is_empty());
        assert_eq!(log_tick_label(1e-4, true), "10⁻⁴");
        assert_eq!(log_tick_label(10.0, true), "10¹");
        assert_eq!(log_tick_label(0.02, true), "0.02");
        let (major, _, decades) = log_ticks(0.008, 0.2);
        assert!(!decades);
        assert_eq!(major.len(), 5, "{major:?}"); // 0.01 0.02 0.05 0.1 0.2
        let (major, _, _) = log_ticks(0.95, 1.1);
        assert!(major.len() >= 2 && major.iter().all(|v| (0.95..=1.1).contains(v)), "{major:?}");
    }

    #[test]
    fn stems_must_be_plain_names() {
        assert!(check_stem("loss").is_ok());
        assert!(check_stem("run-1_sv").is_ok());
        for bad in ["", ".", "..", "a/b", "..\\x"] {
            assert!(check_stem(bad).is_err(), "{bad:?}");
        }
    }
}
