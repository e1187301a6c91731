//! SVG plots of the benchmark: each path's latency histogram, Sluice against plain QEMU,
//! and a stacked bar per path of where Sluice's time goes, stage by stage.
//!
//! Text is left to the SVG viewer's fonts (plotters without its `ttf` feature), so
//! nothing here needs the system's font libraries.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::model::{Bucket, Clock};

/// One colour per series or stage, in order.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// The colour of the `i`th series or stage.
fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// Turns a plotters error (generic over its backend) into an [`anyhow::Error`].
fn plot_err(out: &Path) -> impl Fn(DrawingAreaErrorKind<std::io::Error>) -> anyhow::Error + '_ {
    move |e| anyhow!("plotting {}: {e}", out.display())
}

/// Draws the legend in the upper right corner and writes the file.
fn legend_and_present<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    err: &impl Fn(DrawingAreaErrorKind<std::io::Error>) -> anyhow::Error,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// `[lo, hi]` widened by a tenth on each side, on a logarithmic scale.
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    (lo / 1.1, hi * 1.1)
}

/// Tick values for a logarithmic axis over `[lo, hi]` (`0 < lo < hi`): the powers of ten
/// inside it and 2 and 5 times them, only the powers when that gives too many to read,
/// or every multiple 1 to 9 when it gives too few. (plotters' own log ticks start at the
/// first power of ten, leaving a narrow range unlabelled.)
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks = |steps: &[f64]| {
        let mut out = Vec::new();
        let mut decade = 10f64.powi(lo.log10().floor() as i32);
        while decade <= hi {
            out.extend(steps.iter().map(|s| decade * s).filter(|v| (lo..=hi).contains(v)));
            decade *= 10.0;
        }
        out
    };
    let coarse = ticks(&[1.0, 2.0, 5.0]);
    match coarse.len() {
        0..=3 => ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
        4..=12 => coarse,
        _ => ticks(&[1.0]),
    }
}

/// Writes one path's histogram under one clock to `out` as SVG: a bar of `count` over
/// each bucket `[lo, hi)` on a logarithmic ns axis, one translucent colour per series
/// (e.g. `Sluice`, `plain QEMU`), with a legend.
///
/// # Errors
/// If no series has a bucket, or the file cannot be written.
pub fn histogram(path_name: &str, clock: Clock, series: &[(String, &[Bucket])], out: &Path) -> Result<()> {
    let buckets = || series.iter().flat_map(|(_, hist)| hist.iter());
    let Some(lo) = buckets().map(|b| b.lo.max(1)).min() else {
        bail!("no histogram buckets for `{path_name}`");
    };
    let hi = buckets().map(|b| b.hi).max().unwrap_or(lo).max(lo + 1);
    let (lo, hi) = padded(lo as f64, hi as f64);
    let top = buckets().map(|b| b.count).max().unwrap_or(0).max(1);
    let err = plot_err(out);

    let root = SVGBackend::new(out, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{path_name}, {}", clock.label()), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale().with_key_points(log_ticks(lo, hi)), 0f64..top as f64 * 1.1)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("ns (log scale)")
        .y_desc("count")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .disable_x_mesh()
        .draw()
        .map_err(&err)?;
    for (i, (label, hist)) in series.iter().enumerate() {
        let c = colour(i);
        let bars = hist.iter().map(move |b| {
            Rectangle::new([(b.lo.max(1) as f64, 0.0), (b.hi as f64, b.count as f64)], c.mix(0.5).filled())
        });
        chart
            .draw_series(bars)
            .map_err(&err)?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.mix(0.5).filled()));
    }
    legend_and_present(&mut chart, &root, &err)
}

/// Writes one SVG to `out`: a horizontal stacked bar per row (a path, top to bottom in
/// order), its segments the per-iteration ns of each named stage in order (negative
/// values count as 0), with a legend of the stage names taken from the first row.
///
/// # Errors
/// If `rows` is empty, or the file cannot be written.
pub fn stages(rows: &[(String, Vec<(String, f64)>)], out: &Path) -> Result<()> {
    let Some((_, first)) = rows.first() else { bail!("no rows to plot") };
    let names: Vec<&str> = first.iter().map(|(name, _)| name.as_str()).collect();
    let total = |segments: &[(String, f64)]| segments.iter().map(|(_, v)| v.max(0.0)).sum::<f64>();
    let widest = rows.iter().map(|(_, s)| total(s)).fold(0.0, f64::max).max(1.0);
    let longest = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0) as u32;
    let err = plot_err(out);

    let height = (160 + 50 * rows.len() as u32).max(360);
    let root = SVGBackend::new(out, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let n = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("Sluice, ns per iteration by stage", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(20 + 8 * longest)
        // Room on the right for the legend; `0..n - 1` is n bands, as plotters' integer
        // ranges include their end.
        .build_cartesian_2d(0f64..widest * 1.45, (0..n - 1).into_segmented())
        .map_err(&err)?;
    // Row 0 at the top: the y axis counts upwards.
    let band = |row: usize| n - 1 - row;
    chart
        .configure_mesh()
        .x_desc("ns per iteration")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if *i < n => rows[band(*i)].0.clone(),
            _ => String::new(),
        })
        .draw()
        .map_err(&err)?;
    for (s, &name) in names.iter().enumerate() {
        let c = colour(s);
        let bars = rows.iter().enumerate().filter_map(move |(row, (_, segments))| {
            let start: f64 = segments.iter().take(s).map(|(_, v)| v.max(0.0)).sum();
            let width = segments.get(s)?.1.max(0.0);
            let mut bar = Rectangle::new(
                [
                    (start, SegmentValue::Exact(band(row))),
                    (start + width, SegmentValue::Exact(band(row) + 1)),
                ],
                c.filled(),
            );
            bar.set_margin(6, 6, 0, 0);
            Some(bar)
        });
        chart
            .draw_series(bars)
            .map_err(&err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    legend_and_present(&mut chart, &root, &err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn log_ticks_label_every_range() {
        assert_eq!(log_ticks(3724.0, 9011.0), [4000.0, 5000.0, 6000.0, 7000.0, 8000.0, 9000.0]);
        assert_eq!(log_ticks(27.0, 270.0), [30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 200.0]);
        assert_eq!(log_ticks(87.0, 1430.0), [100.0, 200.0, 500.0, 1000.0]);
        assert_eq!(log_ticks(0.9, 2e6), [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]);
    }

    #[test]
    fn histogram_has_title_axes_and_legend() {
        let dir = TempDir::new("bench-plot-hist");
        let out = dir.path().join("h.svg");
        let a = [Bucket { lo: 0, hi: 16, count: 5 }, Bucket { lo: 320, hi: 336, count: 900 }];
        let b = [Bucket { lo: 96, hi: 112, count: 40 }];
        histogram("hvc-null", Clock::Wall, &[("Sluice".into(), &a), ("plain QEMU".into(), &b)], &out)
            .unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        for text in
            ["<svg", "hvc-null, wall clock", "ns (log scale)", "count", "Sluice", "plain QEMU", "<rect"]
        {
            assert!(svg.contains(text), "lacks {text}");
        }
        assert!(histogram("x", Clock::Icount, &[("Sluice".into(), &[])], &out).is_err());
    }

    #[test]
    fn stages_stacks_and_clamps() {
        let dir = TempDir::new("bench-plot-stages");
        let out = dir.path().join("s.svg");
        let row = |name: &str, v: [f64; 3]| {
            let segs = ["decode", "backend", "outside the trace"].iter().zip(v);
            (name.to_owned(), segs.map(|(s, v)| (s.to_string(), v)).collect::<Vec<_>>())
        };
        stages(&[row("hvc-null", [100.0, 0.0, 70.5]), row("mmio-read", [12.0, 50.0, -6.3])], &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        for text in ["<svg", "hvc-null", "mmio-read", "decode", "backend", "outside the trace"] {
            assert!(svg.contains(text), "lacks {text}");
        }
        assert!(!svg.contains("NaN") && !svg.contains("width=\"-"));
        assert!(stages(&[], &out).is_err());
    }
}
