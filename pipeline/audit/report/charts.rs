//! Inline SVG charts (maud templates): horizontal bars, and vertical histograms with a
//! count axis and threshold lines. Every label passes through [`T`]; every number is
//! rounded by [`num`] or written with a fixed number of decimals.

use maud::{html, Markup};

use super::data::{num, T};

const COLORS: [&str; 4] = ["#2f7d4f", "#c2453c", "#3b6ea8", "#b7862a"];

/// The colour of a series: green for what was kept, red for rejects, blue for inputs and
/// targets, so the same meaning has the same colour in every chart.
fn color(series: &str, j: usize) -> &'static str {
    match series {
        "out" | "kept" | "achieved %" => COLORS[0],
        "rejected" | "rejected docs" => COLORS[1],
        "in" | "target %" => COLORS[2],
        _ => COLORS[(j + 2) % COLORS.len()],
    }
}

/// A "nice" axis step (1, 2 or 5 × 10^k) giving about `ticks` ticks up to `max`.
pub fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    let k = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * mag
}

/// Horizontal bar chart. `rows`: (label, values per series); series side by side.
/// The caller handles the empty case (one explanation per section).
pub fn bar_chart(rows: &[(String, Vec<f64>)], series: &[&str]) -> Markup {
    let max = rows
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-12);
    let label_w = 260.0;
    let bar_w = 420.0;
    let total_w = label_w + bar_w + 110.0;
    let band = 6.0 + 14.0 * series.len() as f64;
    let h = band * rows.len() as f64 + 24.0;
    let ly = h - 8.0;
    html! {
        svg.chart role="img" xmlns="http://www.w3.org/2000/svg" width=(total_w) height=(h)
            viewBox=(format!("0 0 {total_w} {h}")) {
            @for (i, (label, vals)) in rows.iter().enumerate() {
                @let y0 = 4.0 + band * i as f64;
                @let short: String = label.chars().take(40).collect();
                text.lbl x=(label_w - 6.0) y=(y0 + band / 2.0 + 1.0) text-anchor="end" {
                    title { (T(label)) } (T(&short))
                }
                @for (j, v) in vals.iter().enumerate() {
                    @let y = y0 + 14.0 * j as f64;
                    @let w = (v / max * bar_w).max(if *v > 0.0 { 1.0 } else { 0.0 });
                    @let name = series.get(j).copied().unwrap_or("");
                    rect x=(label_w) y=(y) width=(format!("{w:.1}")) height="12" fill=(color(name, j)) {
                        title { (T(name)) ": " (num(*v)) }
                    }
                    text.val x=(format!("{:.1}", label_w + w + 4.0)) y=(y + 10.0) { (num(*v)) }
                }
            }
            @for (j, name) in series.iter().enumerate() {
                @let x = label_w + 120.0 * j as f64;
                rect x=(x) y=(ly - 9.0) width="10" height="10" fill=(color(name, j)) {}
                text.lbl x=(x + 14.0) y=(ly) { (T(name)) }
            }
        }
    }
}

/// A vertical histogram.
pub struct Hist<'a> {
    /// Caption.
    pub title: &'a str,
    /// Bin labels under the x axis (one per bin; shown where there is room).
    pub bin_labels: Vec<String>,
    /// Series names and their counts per bin (side by side in each bin).
    pub series: Vec<(&'a str, Vec<f64>)>,
    /// Threshold lines: (label, x position in bins, 0 = left edge of the first bin).
    pub lines: Vec<(String, f64)>,
    /// Plot width in pixels.
    pub width: f64,
}

/// Left margin (count axis labels) and bottom margin (bin labels) of a histogram.
const AX_L: f64 = 44.0;
const AX_B: f64 = 30.0;

impl Hist<'_> {
    /// Render with a count axis (nice ticks), bin labels and threshold lines.
    pub fn render(&self) -> Markup {
        let n = self.bin_labels.len().max(1);
        let ph = 120.0;
        let top = 16.0 + 14.0 * self.lines.len() as f64;
        let h = top + ph + AX_B + if self.series.len() > 1 { 14.0 } else { 0.0 };
        let w = AX_L + self.width + 12.0;
        let max = self
            .series
            .iter()
            .flat_map(|s| s.1.iter().copied())
            .fold(0.0_f64, f64::max)
            .max(1.0);
        let step = nice_step(max, 4.0).max(1.0);
        let ymax = (max / step).ceil() * step;
        let ticks: Vec<f64> = (0..=((ymax / step).round() as usize))
            .map(|k| k as f64 * step)
            .collect();
        let bw = self.width / n as f64;
        let ns = self.series.len().max(1) as f64;
        let y_of = |c: f64| top + ph - c / ymax * ph;
        let every = ((n as f64 * 42.0 / self.width).ceil() as usize).max(1);
        html! {
            figure.hist {
                figcaption { (T(self.title)) }
                svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(h) viewBox=(format!("0 0 {w} {h}")) {
                    @for t in &ticks {
                        @let y = format!("{:.1}", y_of(*t));
                        line.grid x1=(AX_L) x2=(AX_L + self.width) y1=(y) y2=(y) {}
                        text.val x=(AX_L - 4.0) y=(format!("{:.1}", y_of(*t) + 3.0)) text-anchor="end" { (num(*t)) }
                    }
                    @for (j, (name, bins)) in self.series.iter().enumerate() {
                        @for (i, c) in bins.iter().enumerate() {
                            @let bh = c / ymax * ph;
                            @let x = AX_L + bw * i as f64 + bw / ns * j as f64 + 0.5;
                            rect x=(format!("{x:.1}")) y=(format!("{:.1}", top + ph - bh))
                                width=(format!("{:.1}", (bw / ns - 1.0).max(0.5))) height=(format!("{bh:.1}"))
                                fill=(color(name, j + 1)) {
                                title { (T(self.bin_labels.get(i).map_or("", |s| s.as_str()))) " · " (T(name)) ": " (num(*c)) }
                            }
                        }
                    }
                    line.axis x1=(AX_L) x2=(AX_L + self.width) y1=(top + ph) y2=(top + ph) {}
                    line.axis x1=(AX_L) x2=(AX_L) y1=(top) y2=(top + ph) {}
                    @for (i, l) in self.bin_labels.iter().enumerate() {
                        @if i % every == 0 {
                            text.val x=(format!("{:.1}", AX_L + bw * i as f64)) y=(top + ph + 12.0) { (T(l)) }
                        }
                    }
                    text.val x=(4.0) y=(top - 8.0) { "docs" }
                    @for (k, (label, pos)) in self.lines.iter().enumerate() {
                        @let frac = pos.clamp(0.0, n as f64) / n as f64;
                        @let x = format!("{:.1}", AX_L + frac * self.width);
                        @let anchor = if frac < 0.3 { "start" } else if frac > 0.7 { "end" } else { "middle" };
                        line.threshold x1=(x) x2=(x) y1=(top - 2.0) y2=(top + ph) {}
                        text.thr x=(x) y=(10.0 + 14.0 * k as f64) text-anchor=(anchor) { (T(label)) }
                    }
                    @if self.series.len() > 1 {
                        @for (j, (name, _)) in self.series.iter().enumerate() {
                            @let x = AX_L + 90.0 * j as f64;
                            rect x=(x) y=(h - 11.0) width="10" height="10" fill=(color(name, j + 1)) {}
                            text.lbl x=(x + 14.0) y=(h - 2.0) { (T(name)) }
                        }
                    }
                }
            }
        }
    }
}

/// Histogram of one value range cut in `bins.len()` equal bins, with threshold lines
/// at their values (clamped to the range).
/// The caller bins over [lo, hi]; thresholds outside it widen the axis (empty bins are
/// added on that side, same width) so every line is drawn where its value is.
pub fn value_hist(title: &str, lo: f64, hi: f64, bins: &[f64], lines: &[(String, f64)]) -> Markup {
    let (mut lo, mut hi, mut bins) = (lo, hi, bins.to_vec());
    if hi <= lo {
        // One value: one bin.
        bins = vec![bins.iter().sum()];
        hi = lo + 1.0;
    }
    let w = (hi - lo) / bins.len().max(1) as f64;
    // Up to the range's width again on each side; a threshold further out is marked at
    // the edge with an arrow (the bars would be too thin to read otherwise).
    let cap = 2 * bins.len();
    if w > 0.0 {
        for (_, v) in lines {
            let below = ((lo - v) / w).ceil();
            if below > 0.0 && (bins.len() as f64 + below) as usize <= cap {
                for _ in 0..below as usize {
                    bins.insert(0, 0.0);
                    lo -= w;
                }
            }
            let above = ((v - hi) / w).ceil();
            if above > 0.0 && (bins.len() as f64 + above) as usize <= cap {
                bins.resize(bins.len() + above as usize, 0.0);
                hi += w * above;
            }
        }
    }
    let bins = &bins[..];
    let n = bins.len().max(1) as f64;
    let span = (hi - lo).max(1e-12);
    let labels = (0..bins.len())
        .map(|i| num(round3(lo + (hi - lo) * i as f64 / n)))
        .collect();
    Hist {
        title,
        bin_labels: labels,
        series: vec![("docs", bins.to_vec())],
        lines: lines
            .iter()
            .map(|(l, v)| {
                let label = if *v < lo {
                    format!("◀ {l} (below the range)")
                } else if *v > hi {
                    format!("{l} (above the range) ▶")
                } else {
                    l.clone()
                };
                (label, (v - lo) / span * n)
            })
            .collect(),
        // One bin (one value): a narrow chart, not one bar as wide as the page.
        width: if bins.len() == 1 { 60.0 } else { 250.0 },
    }
    .render()
}

/// Round to three significant digits (axis labels).
fn round3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let p = 10f64.powi(2 - x.abs().log10().floor() as i32);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(nice_step(7.0, 4.0), 2.0);
        assert_eq!(nice_step(1234.0, 4.0), 500.0);
        assert_eq!(round3(0.123456), 0.123);
        assert_eq!(round3(98765.0), 98800.0);
    }

    #[test]
    fn histogram_has_axis_ticks_and_threshold() {
        let m = value_hist(
            "q <x>",
            0.0,
            1.0,
            &[3.0, 0.0, 7.0, 12.0],
            &[("threshold 0.5".into(), 0.5)],
        )
        .into_string();
        assert!(m.contains("q &lt;x&gt;"), "{m}");
        assert!(m.contains("class=\"threshold\""), "{m}");
        assert!(m.contains(">threshold 0.5<"), "{m}");
        // Ticks 0, 5, 10, 15 on the count axis.
        for t in [">0<", ">5<", ">10<", ">15<"] {
            assert!(m.contains(t), "{t} in {m}");
        }
    }
}
