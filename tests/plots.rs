//! The plot module draws valid SVG and PNG files from synthetic metrics, and says clearly why when
//! it cannot. Set `ORTHO_RNN_KEEP_PLOTS=1` to keep the output directories for inspection.

use ortho_rnn::plot::{
    Baseline, CurveOptions, HeatmapOptions, Metric, SpectrumOptions, plot_curves, plot_grad_norm_heatmap, plot_run_dir,
    plot_singular_values,
};
use ortho_rnn::train::metrics::{EvalRecord, MetricsWriter};
use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, unique to this process and call.
#[path = "common/run_dirs.rs"]
mod run_dirs;

fn scratch(name: &str) -> PathBuf {
    run_dirs::scratch("plots", name)
}

fn cleanup(dir: &Path) {
    if std::env::var_os("ORTHO_RNN_KEEP_PLOTS").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
}

/// A copy-task-like run: loss decays from the baseline at `rate`, accuracy rises, the singular
/// values spread with `margin`, and every other record carries `T = 60` gradient norms that decay
/// back in time faster for larger margins.
fn synthetic_run(rate: f64, margin: f64, with_epoch: bool) -> Vec<EvalRecord> {
    let baseline = 10.0 * 8f64.ln() / 120.0;
    (0..40)
        .map(|i| {
            let t = i as f64;
            let decay = (-t * rate).exp();
            let spread = margin * (1.0 - (-t / 10.0).exp());
            EvalRecord {
                iter: i * 25,
                epoch: with_epoch.then_some(t * 0.5),
                seconds: t * 0.1,
                loss: baseline * decay + 1e-3,
                train_loss: Some(baseline * decay * 1.1 + 1e-3),
                accuracy: Some(1.0 - 0.875 * decay),
                sv_min: Some(1.0 - spread),
                sv_mean: Some(1.0 + 0.05 * spread),
                sv_std: Some(0.3 * spread),
                sv_max: Some(1.0 + spread),
                grad_norms: (i % 2 == 0)
                    .then(|| (1..=60).map(|s| (-(60 - s) as f64 * margin * 0.1 * (1.0 + t / 20.0)).exp()).collect()),
                ..Default::default()
            }
        })
        .collect()
}

fn sweep() -> Vec<(String, Vec<EvalRecord>)> {
    vec![
        ("m=0".to_string(), synthetic_run(0.05, 0.0, false)),
        ("m=0.01".to_string(), synthetic_run(0.1, 0.01, false)),
        ("m=1".to_string(), synthetic_run(0.2, 1.0, false)),
    ]
}

/// Parses the SVG, checks its root and size, and that every `expected` string is in its text.
fn check_svg(path: &Path, size: (u32, u32), expected: &[&str]) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{}", path.display());
    assert_eq!(root.attribute("width"), Some(size.0.to_string().as_str()));
    assert_eq!(root.attribute("height"), Some(size.1.to_string().as_str()));
    let words: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
    for e in expected {
        assert!(words.iter().any(|w| w.contains(e)), "{}: no text {e:?} among {words:?}", path.display());
    }
}

/// Decodes the PNG, checks its size and that it is not blank.
fn check_png(path: &Path, size: (u32, u32)) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}: no PNG signature", path.display());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), size, "{}", path.display());
    let px = &buf[..info.buffer_size()];
    let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / px.len() as f64;
    let var = px.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / px.len() as f64;
    assert!(var > 100.0, "{}: nearly blank (pixel variance {var})", path.display());
    // Something besides the white background and the grid: at least 1% strongly coloured/dark pixels.
    let inked = px.chunks(info.color_type.samples()).filter(|p| p.iter().take(3).any(|&c| c < 150)).count();
    assert!(inked * 100 > px.len() / info.color_type.samples(), "{}: too little ink ({inked} px)", path.display());
}

fn check_pair(paths: &[PathBuf], dir: &Path, stem: &str, size: (u32, u32), expected: &[&str]) {
    assert_eq!(paths, [dir.join(format!("{stem}.svg")), dir.join(format!("{stem}.png"))]);
    check_svg(&paths[0], size, expected);
    check_png(&paths[1], size);
}

#[test]
fn loss_curves_with_baseline() {
    let dir = scratch("curves");
    let opts = CurveOptions {
        size: (800, 500),
        baseline: Some(Baseline { value: 10.0 * 8f64.ln() / 120.0, label: "baseline".into() }),
        ..Default::default()
    };
    let paths = plot_curves(&sweep(), Metric::Loss, &dir, "loss", "Copy task, T = 100", &opts).unwrap();
    check_pair(&paths, &dir, "loss", (800, 500), &["Copy task, T = 100", "m=0", "m=0.01", "m=1", "baseline"]);
    check_svg(&paths[0], (800, 500), &["evaluation loss", "training iteration"]);
    cleanup(&dir);
}

#[test]
fn accuracy_against_epochs_and_log_loss() {
    let dir = scratch("curves-epoch");
    let runs = vec![
        ("orthogonal".to_string(), synthetic_run(0.08, 0.0, true)),
        ("Glorot".to_string(), synthetic_run(0.03, 0.5, true)),
    ];
    let paths = plot_curves(&runs, Metric::Accuracy, &dir, "acc", "Accuracy", &CurveOptions::default()).unwrap();
    check_pair(&paths, &dir, "acc", (900, 600), &["Accuracy", "orthogonal", "Glorot", "epoch", "accuracy"]);

    let log = CurveOptions { log_y: true, ..Default::default() };
    let paths = plot_curves(&runs, Metric::TrainLoss, &dir, "train_log", "Training loss", &log).unwrap();
    check_pair(&paths, &dir, "train_log", (900, 600), &["Training loss", "training loss"]);

    // A copy-task loss that falls through five decades: decade ticks, labelled 10⁻ⁿ.
    let mut deep = sweep();
    for (k, (_, recs)) in deep.iter_mut().enumerate() {
        recs.iter_mut().enumerate().for_each(|(i, r)| r.loss = 0.17 * (-(i as f64) * 0.1 * (k + 1) as f64).exp());
    }
    let paths = plot_curves(&deep, Metric::Loss, &dir, "deep", "Copy task, T = 1000", &log).unwrap();
    check_pair(&paths, &dir, "deep", (900, 600), &["10⁻³", "m=0.01"]);
    cleanup(&dir);
}

#[test]
fn curves_skip_absent_values_and_reject_missing_metrics() {
    let dir = scratch("curves-missing");
    let mut runs = sweep();
    // One run without accuracy at all, another with a gap: both still plot.
    runs[0].1.iter_mut().for_each(|r| r.accuracy = None);
    runs[1].1[3].accuracy = None;
    let paths = plot_curves(&runs, Metric::Accuracy, &dir, "acc", "gaps", &CurveOptions::default()).unwrap();
    check_svg(&paths[0], (900, 600), &["m=0.01", "m=1"]);

    let err = plot_curves(&runs, Metric::Bpc, &dir, "bpc", "none", &CurveOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bpc"), "{err}");
    assert!(!dir.join("bpc.svg").exists());

    let err = plot_curves(&[], Metric::Loss, &dir, "empty", "none", &CurveOptions::default()).unwrap_err();
    assert!(err.to_string().contains("0 run(s)"), "{err}");

    let mut zero = sweep();
    zero.iter_mut().flat_map(|(_, r)| r.iter_mut()).for_each(|r| r.loss = 0.0);
    let log = CurveOptions { log_y: true, ..Default::default() };
    let err = plot_curves(&zero, Metric::Loss, &dir, "log", "none", &log).unwrap_err();
    assert!(err.to_string().contains("positive"), "{err}");

    let bad = CurveOptions { baseline: Some(Baseline { value: f64::NAN, label: "b".into() }), ..Default::default() };
    assert!(plot_curves(&sweep(), Metric::Loss, &dir, "nan", "t", &bad).is_err());
    let tiny = CurveOptions { size: (10, 10), ..Default::default() };
    assert!(plot_curves(&sweep(), Metric::Loss, &dir, "tiny", "t", &tiny).is_err());
    let err = plot_curves(&sweep(), Metric::Loss, &dir, "../escape", "t", &CurveOptions::default()).unwrap_err();
    assert!(err.to_string().contains("stem"), "{err}");
    cleanup(&dir);
}

#[test]
fn singular_value_spread() {
    let dir = scratch("spectrum");
    let recs = synthetic_run(0.1, 0.3, true);
    let opts = SpectrumOptions { size: (700, 480), ..Default::default() };
    let paths = plot_singular_values(&recs, &dir, "sv", "Permuted MNIST, m = 0.3", &opts).unwrap();
    check_pair(&paths, &dir, "sv", (700, 480), &["Permuted MNIST, m = 0.3", "max", "mean ± std", "min", "σ = 1"]);

    let bare: Vec<EvalRecord> =
        recs.iter().map(|r| EvalRecord { sv_min: None, sv_mean: None, sv_max: None, ..r.clone() }).collect();
    let err = plot_singular_values(&bare, &dir, "none", "t", &SpectrumOptions::default()).unwrap_err();
    assert!(err.to_string().contains("sv_mean"), "{err}");
    cleanup(&dir);
}

#[test]
fn gradient_norm_heatmap() {
    let dir = scratch("heatmap");
    let recs = synthetic_run(0.1, 0.5, false);
    let paths = plot_grad_norm_heatmap(&recs, &dir, "grads", "Copy task, m = 0.5", &HeatmapOptions::default()).unwrap();
    check_pair(&paths, &dir, "grads", (900, 600), &["Copy task, m = 0.5", "time step t", "training iteration"]);

    let raw = HeatmapOptions { size: (640, 420), normalize: false };
    let paths = plot_grad_norm_heatmap(&recs, &dir, "raw", "raw", &raw).unwrap();
    check_pair(&paths, &dir, "raw", (640, 420), &["‖∂L/∂hₜ‖"]);

    let none: Vec<EvalRecord> = recs.iter().map(|r| EvalRecord { grad_norms: None, ..r.clone() }).collect();
    let err = plot_grad_norm_heatmap(&none, &dir, "none", "t", &HeatmapOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--record-grad-norms"), "{err}");
    cleanup(&dir);
}

#[test]
fn heatmap_of_a_long_run_stays_small() {
    // Figure 2's setting: T = 220 steps recorded at each of 1000 iterations, a margin of 0.01.
    let dir = scratch("heatmap-long");
    let recs: Vec<EvalRecord> = (0..1000)
        .map(|i| EvalRecord {
            iter: i,
            grad_norms: Some((1..=220).map(|t| (-((220 - t) as f64) * 0.02 * (i as f64 / 400.0)).exp()).collect()),
            ..Default::default()
        })
        .collect();
    let paths = plot_grad_norm_heatmap(&recs, &dir, "fig2", "m = 0.01", &HeatmapOptions::default()).unwrap();
    check_pair(&paths, &dir, "fig2", (900, 600), &["m = 0.01"]);
    let svg_bytes = std::fs::metadata(&paths[0]).unwrap().len();
    assert!(svg_bytes < 3_000_000, "SVG is {svg_bytes} bytes");
    cleanup(&dir);
}

fn write_run(path: &Path, recs: &[EvalRecord]) {
    let mut w = MetricsWriter::create(path, false).unwrap();
    recs.iter().for_each(|r| w.write(r).unwrap());
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn run_dir_of_jsonl_files() {
    let dir = scratch("rundir-flat");
    // Loss only (no optional fields) in one run, everything in the other.
    let plain: Vec<EvalRecord> = synthetic_run(0.1, 0.0, false)
        .into_iter()
        .map(|r| EvalRecord { iter: r.iter, loss: r.loss, ..Default::default() })
        .collect();
    write_run(&dir.join("sgd.jsonl"), &plain);
    write_run(&dir.join("geo sgd.jsonl"), &synthetic_run(0.2, 0.1, false));
    std::fs::write(dir.join("notes.txt"), "not metrics").unwrap();

    let paths = plot_run_dir(&dir).unwrap();
    let got = names(&paths);
    for stem in ["loss", "train_loss", "accuracy", "geo_sgd_singular_values", "geo_sgd_grad_norms"] {
        assert!(got.contains(&format!("{stem}.svg")) && got.contains(&format!("{stem}.png")), "{stem}: {got:?}");
    }
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(paths.iter().all(|p| p.starts_with(dir.join("plots")) && p.is_file()));
    check_svg(&dir.join("plots/loss.svg"), (900, 600), &["sgd", "geo sgd"]);

    // Drawing again (now with plots/ present) gives the same files.
    assert_eq!(names(&plot_run_dir(&dir).unwrap()), got);
    cleanup(&dir);
}

#[test]
fn run_dir_of_a_sweep() {
    let dir = scratch("rundir-sweep");
    for (label, recs) in sweep() {
        write_run(&dir.join(&label).join("metrics.jsonl"), &recs);
    }
    std::fs::create_dir_all(dir.join("empty-subdir")).unwrap();
    let paths = plot_run_dir(&dir).unwrap();
    let got = names(&paths);
    assert!(got.contains(&"m_0.01_grad_norms.png".to_string()), "{got:?}");
    assert!(got.contains(&"m_1_singular_values.svg".to_string()), "{got:?}");
    // Legend order follows the numbers in the labels.
    let svg = std::fs::read_to_string(dir.join("plots/accuracy.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: Vec<&str> =
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    let at = |s: &str| texts.iter().position(|t| *t == s).unwrap_or_else(|| panic!("no {s} in {texts:?}"));
    assert!(at("m=0") < at("m=0.01") && at("m=0.01") < at("m=1"));

    // A single run's directory: metrics.jsonl labelled by the directory name.
    let single = dir.join("m=1");
    plot_run_dir(&single).unwrap();
    check_svg(&single.join("plots/loss.svg"), (900, 600), &["m=1"]);
    cleanup(&dir);
}

#[test]
fn run_dir_errors() {
    let dir = scratch("rundir-errors");
    let err = plot_run_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("no metrics files") && err.contains(&format!("{}/*.jsonl", dir.display())), "{err}");

    let missing = dir.join("does-not-exist");
    assert!(plot_run_dir(&missing).unwrap_err().to_string().contains("does-not-exist"));

    std::fs::write(dir.join("empty.jsonl"), "\n").unwrap();
    assert!(plot_run_dir(&dir).unwrap_err().to_string().contains("no records"));

    std::fs::write(dir.join("bad.jsonl"), "{\"iter\":0,\"seconds\":0,\"loss\":1}\n{not json}\n").unwrap();
    let err = plot_run_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl") && err.contains("line 2"), "{err}");
    cleanup(&dir);
}

#[test]
fn run_dir_of_a_sweep_over_t_draws_one_chart_per_length() {
    let dir = scratch("rundir-lengths");
    // Experiment run directories: metrics.jsonl beside a config.json naming the task's length
    // (`null`: the task's default, 100 for copy).
    for (name, seq_len) in [("t10_a", "10"), ("t10_b", "10"), ("t30_a", "30"), ("default_a", "null")] {
        write_run(&dir.join(name).join("metrics.jsonl"), &synthetic_run(0.1, 0.1, false));
        let config = format!(r#"{{"config": {{"job": {{"task": {{"kind": "copy", "seq_len": {seq_len}}}}}}}}}"#);
        std::fs::write(dir.join(name).join("config.json"), config).unwrap();
    }
    let got = names(&plot_run_dir(&dir).unwrap());
    for stem in ["T10_loss", "T30_loss", "T100_loss", "T10_accuracy"] {
        assert!(got.contains(&format!("{stem}.png")), "{stem}: {got:?}");
    }
    assert!(!got.contains(&"loss.png".to_string()), "{got:?}");
    // Each chart's legend holds its own runs only.
    let svg = std::fs::read_to_string(dir.join("plots/T10_loss.svg")).unwrap();
    assert!(svg.contains("t10_a") && svg.contains("t10_b") && !svg.contains("t30_a"), "T10 legend");
    cleanup(&dir);
}

/// A legend never covers the data: every legend label lies to the right of the plotting area.
#[test]
fn the_legend_sits_beside_the_plot() {
    let dir = scratch("legend");
    let runs: Vec<(String, Vec<EvalRecord>)> =
        (0..24).map(|i| (format!("run {i:02} label"), synthetic_run(0.02 * (i + 1) as f64, 0.1, false))).collect();
    plot_curves(&runs, Metric::Loss, &dir, "many", "24 runs", &CurveOptions::default()).unwrap();
    let svg = std::fs::read_to_string(dir.join("many.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let x_of = |n: roxmltree::Node| n.attribute("x").and_then(|x| x.parse::<f64>().ok());
    let labels: Vec<f64> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.trim().starts_with("run ")))
        .filter_map(x_of)
        .collect();
    assert_eq!(labels.len(), 24, "every run is in the legend");
    // The data lines (polylines of more than two points; a legend sample has two) all end left
    // of the leftmost legend label.
    let right_of_data = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter_map(|n| n.attribute("points"))
        .filter(|p| p.split_whitespace().count() > 2)
        .flat_map(|p| {
            p.split_whitespace().filter_map(|xy| xy.split(',').next()?.parse::<f64>().ok()).collect::<Vec<_>>()
        })
        .fold(0.0f64, f64::max);
    let leftmost_label = labels.iter().copied().fold(f64::MAX, f64::min);
    assert!(
        right_of_data < leftmost_label,
        "data reaches x = {right_of_data}, a legend label starts at {leftmost_label}"
    );
    cleanup(&dir);
}

/// Labels too long for a legend beside the plot (it would leave the plot less than 55 % of the
/// width) go below it, in columns: every label lies below the lowest data point, and the data
/// spans most of the canvas's width.
#[test]
fn long_labels_put_the_legend_below_the_plot() {
    let dir = scratch("legend-below");
    let runs: Vec<(String, Vec<EvalRecord>)> = (0..6)
        .map(|i| {
            let label = format!("run {i} Orthogonal_Gain1.1_adj_Reg0.01 (median of 3)");
            (label, synthetic_run(0.02 * (i + 1) as f64, 0.1, false))
        })
        .collect();
    plot_curves(&runs, Metric::Loss, &dir, "long", "6 runs", &CurveOptions::default()).unwrap();
    let svg = std::fs::read_to_string(dir.join("long.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let attr = |n: roxmltree::Node, a: &str| n.attribute(a).and_then(|x| x.parse::<f64>().ok());
    let labels: Vec<f64> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.trim().starts_with("run ")))
        .filter_map(|n| attr(n, "y"))
        .collect();
    assert_eq!(labels.len(), 6, "every run is in the legend");
    let points: Vec<(f64, f64)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter_map(|n| n.attribute("points"))
        .filter(|p| p.split_whitespace().count() > 2)
        .flat_map(|p| {
            p.split_whitespace()
                .filter_map(|xy| {
                    let (x, y) = xy.split_once(',')?;
                    Some((x.parse::<f64>().ok()?, y.parse::<f64>().ok()?))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let lowest_data = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let top_label = labels.iter().copied().fold(f64::MAX, f64::min);
    assert!(lowest_data < top_label, "data reaches y = {lowest_data}, a legend label starts at {top_label}");
    let (x0, x1) = points.iter().fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let width = f64::from(ortho_rnn::plot::DEFAULT_SIZE.0);
    assert!(x1 - x0 > 0.6 * width, "the data spans {x0}..{x1} of {width} pixels");
    cleanup(&dir);
}
