//! Plots (SVG and PNG) drawn from metrics files.
