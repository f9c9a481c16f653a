//! `losses.png`: the loss curves and the discriminator's outputs against the step.
//!
//! Drawn with plotters into an RGB buffer and encoded as PNG in memory, then written
//! atomically. Text uses DejaVu Sans compiled into the binary (the `dejavu` crate), so
//! the plot is the same on a machine with no system fonts at all.

use std::path::Path;
use std::sync::Once;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::gif::subsample;
use super::LossRecord;
use crate::atomic::write_atomic;
use crate::eval::nearest::quantile;

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 760;
/// Plotted points per line: more than the image has pixel columns only costs time.
const MAX_POINTS: usize = 2000;
const FONT: &str = "sans-serif";

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 110, 0);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PURPLE: RGBColor = RGBColor(148, 103, 189);

/// One named series: its raw values (drawn light) and their moving average (drawn bold).
struct Series<'a> {
    name: &'a str,
    colour: RGBColor,
    raw: Vec<(f64, f64)>,
    smooth: Vec<(f64, f64)>,
}

impl<'a> Series<'a> {
    fn new(name: &'a str, colour: RGBColor, records: &[LossRecord], value: impl Fn(&LossRecord) -> f32) -> Self {
        let values: Vec<f64> = records.iter().map(|r| value(r) as f64).collect();
        // The average of winsorised values: one exploding step must not bend the trend line.
        let avg = moving_average(&winsorise(&values), (records.len() / 50).clamp(1, 500));
        // At most MAX_POINTS, evenly spaced, the last kept.
        let kept = subsample(records.len(), MAX_POINTS);
        let pick = |v: &[f64]| -> Vec<(f64, f64)> { kept.iter().map(|&i| (records[i].step as f64, v[i])).collect() };
        Self { name, colour, raw: pick(&values), smooth: pick(&avg) }
    }
}

/// Writes the plot of `records` to `path` (PNG). Fine with no records (empty axes).
/// `extra` names the fifth column (the penalty, or fastgan's reconstruction error), drawn when not zero.
pub fn write_loss_plot(records: &[LossRecord], extra: &str, title: &str, path: &Path) -> anyhow::Result<()> {
    register_fonts();
    let mut losses =
        vec![Series::new("loss_d", BLUE, records, |r| r.loss_d), Series::new("loss_g", ORANGE, records, |r| r.loss_g)];
    if records.iter().any(|r| r.gp != 0.0) {
        losses.push(Series::new(extra, GREEN, records, |r| r.gp));
    }
    let outputs =
        [Series::new("d_real", GREEN, records, |r| r.d_real), Series::new("d_fake", PURPLE, records, |r| r.d_fake)];

    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root.titled(title, (FONT, 26).into_font()).map_err(plot_err)?;
        let (top, bottom) = root.split_vertically(HEIGHT * 57 / 100);
        let last = records.last().map_or(1, |r| r.step.max(1)) as f64;
        let first = records.first().map_or(0, |r| r.step.saturating_sub(1)) as f64;
        panel(&top, "loss", &losses, first..last)?;
        panel(&bottom, "mean D output (real / fake)", &outputs, first..last)?;
        root.present().map_err(plot_err)?;
    }
    let img = image::RgbImage::from_raw(WIDTH, HEIGHT, buf).context("plot buffer has the wrong size")?;
    write_atomic(path, &canard_shared::image::encode_png(&image::DynamicImage::ImageRgb8(img))?)?;
    Ok(())
}

/// One chart: every series light and raw, then bold and smoothed, with a legend.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    y_label: &str,
    series: &[Series],
    x: std::ops::Range<f64>,
) -> anyhow::Result<()> {
    let y = y_range(series);
    // Enough decimals to tell the y ticks apart, no more ("0.5", not "0.500000").
    let span = y.end - y.start;
    let decimals = [50.0, 5.0, 0.5].iter().take_while(|&&t| span < t).count();
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(84)
        .build_cartesian_2d(x, y.clone())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_label)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;
    // Spikes beyond the robust range are drawn at its edge rather than squashing the rest.
    let clamp = |pts: &[(f64, f64)]| pts.iter().map(|&(s, v)| (s, v.clamp(y.start, y.end))).collect::<Vec<_>>();
    for s in series {
        chart.draw_series(LineSeries::new(clamp(&s.raw), s.colour.mix(0.25))).map_err(plot_err)?;
    }
    for s in series {
        let colour = s.colour;
        chart
            .draw_series(LineSeries::new(clamp(&s.smooth), colour.stroke_width(2)))
            .map_err(plot_err)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 22, y)], colour.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// The y range that shows the smoothed lines whole and the raw ones without their
/// worst 1% of outliers, with a little air; never empty.
fn y_range(series: &[Series]) -> std::ops::Range<f64> {
    let mut raw: Vec<f64> = series.iter().flat_map(|s| s.raw.iter().map(|p| p.1)).filter(|v| v.is_finite()).collect();
    raw.sort_by(f64::total_cmp);
    let smooth = series.iter().flat_map(|s| s.smooth.iter().map(|p| p.1)).filter(|v| v.is_finite());
    let (mut lo, mut hi) = smooth.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    // With no raw values the quantiles are NaN, which min and max pass over.
    lo = lo.min(quantile(&raw, 0.01));
    hi = hi.max(quantile(&raw, 0.99));
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad)..(hi + pad)
}

/// `values` with outliers pulled in to the 1st / 99th percentile, widened by half the span
/// between them (so ordinary noise and steady trends are left alone).
fn winsorise(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.len() < 20 {
        return values.to_vec();
    }
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (quantile(&sorted, 0.01), quantile(&sorted, 0.99));
    let (lo, hi) = (lo - (hi - lo) * 0.5, hi + (hi - lo) * 0.5);
    values.iter().map(|v| if v.is_finite() { v.clamp(lo, hi) } else { *v }).collect()
}

/// The mean of the `window` values ending at each index (shorter at the start).
fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    // Non-finite values (a diverged last step) would poison the running sum.
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let mut sum = 0.0;
    (0..values.len())
        .map(|i| {
            sum += finite(values[i]);
            if i >= window {
                sum -= finite(values[i - window]);
            }
            sum / (i + 1).min(window) as f64
        })
        .collect()
}

/// plotters keeps fonts in a process-wide table; fill it once.
fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // The bytes are a valid TTF compiled in: failure here is a build problem, and the
        // plot then just has no text rather than failing the run.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the loss plot: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize, gp: bool) -> Vec<LossRecord> {
        (1..=n)
            .map(|s| {
                let t = s as f32;
                let noise = ((t * 12.9898).sin() * 43758.547).fract();
                LossRecord {
                    step: s,
                    epoch: 1 + s / 100,
                    loss_d: 1.4 - 0.6 * (1.0 - (-t / 300.0).exp()) + 0.3 * noise,
                    loss_g: 0.8 + 1.5 * (1.0 - (-t / 200.0).exp()) + 0.6 * noise,
                    d_real: 0.5 + 0.3 * (1.0 - (-t / 250.0).exp()) + 0.1 * noise,
                    d_fake: 0.5 - 0.35 * (1.0 - (-t / 250.0).exp()) + 0.1 * noise,
                    gp: if gp { 0.2 * (-t / 500.0).exp() } else { 0.0 },
                    seconds: s as f64,
                }
            })
            .collect()
    }

    #[test]
    fn writes_a_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("losses.png");
        let mut recs = records(1500, true);
        recs[700].loss_g = 1e6; // one spike must not flatten the rest
        write_loss_plot(&recs, "gp", "test — wgan-gp", &p).unwrap();
        let img = image::open(&p).unwrap();
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
        // Text and lines were drawn: far from a blank page.
        let dark = img.to_luma8().pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 5_000, "{dark} dark pixels");
        if let Ok(out) = std::env::var("CANARD_PLOT_OUT") {
            std::fs::copy(&p, out).unwrap();
        }
    }

    #[test]
    fn empty_and_single_records_still_plot() {
        let dir = tempfile::tempdir().unwrap();
        write_loss_plot(&[], "gp", "empty", &dir.path().join("a.png")).unwrap();
        write_loss_plot(&records(1, false), "gp", "one", &dir.path().join("b.png")).unwrap();
        let mut nan = records(3, false);
        nan[2].loss_d = f32::NAN;
        write_loss_plot(&nan, "gp", "diverged", &dir.path().join("c.png")).unwrap();
    }

    #[test]
    fn moving_average_and_thinning() {
        assert_eq!(moving_average(&[1.0, 3.0, 5.0, 7.0], 2), [1.0, 2.0, 4.0, 6.0]);
        let mut v: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        v[50] = 1e6;
        let w = winsorise(&v);
        assert!(w[50] < 2.0 && w[10] == v[10], "{}", w[50]);
        let recs = records(10_000, false);
        let t = Series::new("loss_d", BLUE, &recs, |r| r.loss_d).raw;
        assert_eq!(t.len(), MAX_POINTS);
        assert_eq!((t[0].0, t[MAX_POINTS - 1].0), (1.0, 10_000.0));
    }
}
