//! Charts as inline SVG drawn on the server: no script and no library.
//! Each one has a title, axes labelled with their unit, and its figures
//! written beside the marks, so it reads at a glance and still says the
//! exact number. Colours come from the stylesheet (classes `s0`…`s5`).
//!
//! Geometry uses `f64`; the figures printed are the exact decimals.

use chrono::NaiveDate;
use maud::{html, Markup};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::dashboard::format::grouped;

/// Natural widths in pixels: a chart is drawn 1:1 (its text at the
/// stylesheet's size) and only shrinks to fit a narrower card.
const WIDTH: f64 = 760.0;
const DAILY_WIDTH: f64 = 1000.0;
const AMOUNTS_WIDTH: f64 = 560.0;

/// A step of 1, 2 or 5 times a power of ten that splits `span` into about
/// `ticks` parts.
fn nice_step(span: f64, ticks: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / ticks;
    let power = 10f64.powf(raw.log10().floor());
    let unit = raw / power;
    let nice = if unit <= 1.0 {
        1.0
    } else if unit <= 2.0 {
        2.0
    } else if unit <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// A tick value written without float noise (`0.30000000000000004` → `0.3`).
fn tick(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    grouped(&format!("{value:.decimals$}"))
}

/// One kind of thing counted per day.
pub struct Series {
    pub name: String,
    /// One count per day of the chart.
    pub counts: Vec<u64>,
}

/// Stacked bars: how many of each series happened on each day.
pub fn daily_counts(title: &str, unit: &str, days: &[NaiveDate], series: &[Series]) -> Markup {
    let totals: Vec<u64> = (0..days.len())
        .map(|d| {
            series
                .iter()
                .map(|s| s.counts.get(d).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    let (left, right, top, bottom, height) = (56.0, 12.0, 12.0, 40.0, 240.0);
    let plot_w = DAILY_WIDTH - left - right;
    let plot_h = height - top - bottom;
    let step = nice_step(max as f64, 4.0).max(1.0);
    let ceiling = ((max as f64 / step).ceil() * step).max(step);
    let y = |v: f64| top + plot_h - v / ceiling * plot_h;
    let slot = plot_w / days.len().max(1) as f64;
    let bar_w = (slot * 0.75).max(1.0);
    let label_every = days.len().div_ceil(12).max(1);
    struct Stacked {
        class: String,
        x: f64,
        y: f64,
        height: f64,
        title: String,
    }
    let mut rects = Vec::new();
    for (d, day) in days.iter().enumerate() {
        let x = left + d as f64 * slot + (slot - bar_w) / 2.0;
        let mut base = 0u64;
        for (i, s) in series.iter().enumerate() {
            let n = s.counts.get(d).copied().unwrap_or(0);
            if n > 0 {
                rects.push(Stacked {
                    class: format!("s{}", i % 6),
                    x,
                    y: y((base + n) as f64),
                    height: y(base as f64) - y((base + n) as f64),
                    title: format!("{} · {}: {n}", day.format("%Y-%m-%d"), s.name),
                });
            }
            base += n;
        }
    }
    let ticks: Vec<f64> = (0..=((ceiling / step).round() as usize))
        .map(|i| i as f64 * step)
        .collect();
    html! {
        figure.chart {
            figcaption { (title) }
            @if max == 0 {
                p.muted { "Nothing was counted in this period." }
            } @else {
                svg viewBox=(format!("0 0 {DAILY_WIDTH} {height}")) width=(DAILY_WIDTH) height=(height) role="img" aria-label=(title) {
                    @for t in &ticks {
                        line.grid x1=(left) x2=(DAILY_WIDTH - right) y1=(y(*t)) y2=(y(*t)) {}
                        text.axis x=(left - 6.0) y=(y(*t) + 4.0) text-anchor="end" { (tick(*t, step)) }
                    }
                    text.axis transform=(format!("translate(14 {}) rotate(-90)", top + plot_h / 2.0)) text-anchor="middle" { (unit) }
                    @for r in &rects {
                        rect class=(r.class) x=(r.x) width=(bar_w) y=(r.y) height=(r.height) { title { (r.title) } }
                    }
                    @for (d, day) in days.iter().enumerate().step_by(label_every) {
                        text.axis x=(left + d as f64 * slot + slot / 2.0) y=(top + plot_h + 16.0) text-anchor="middle" { (day.format("%d")) }
                    }
                    line.baseline x1=(left) x2=(DAILY_WIDTH - right) y1=(top + plot_h) y2=(top + plot_h) {}
                    text.axis x=(left + plot_w / 2.0) y=(height - 4.0) text-anchor="middle" {
                        "day of the month (UTC)"
                    }
                }
                ul.legend {
                    @for (i, s) in series.iter().enumerate() {
                        li { span class=(format!("swatch s{}", i % 6)) {} (s.name) ": " strong { (grouped(&s.counts.iter().sum::<u64>().to_string())) } }
                    }
                }
            }
        }
    }
}

/// One bar of [`amounts`].
pub struct Bar {
    pub label: String,
    pub value: Decimal,
    /// A colour class (`s0`…`s5`, `good`, `bad`, `muted`).
    pub class: &'static str,
}

/// Horizontal bars of amounts in one unit, from zero (negative amounts,
/// such as a loss, extend to the left).
pub fn amounts(title: &str, unit: &str, bars: &[Bar]) -> Markup {
    let values: Vec<f64> = bars
        .iter()
        .map(|b| b.value.to_f64().unwrap_or(0.0))
        .collect();
    let low = values.iter().copied().fold(0.0, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    let span = (high - low).max(f64::MIN_POSITIVE);
    let (label_w, value_w, row) = (150.0, 120.0, 30.0);
    let plot_w = AMOUNTS_WIDTH - label_w - value_w;
    let x = |v: f64| label_w + (v - low) / span * plot_w;
    let height = row * bars.len() as f64 + 26.0;
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {AMOUNTS_WIDTH} {height}")) width=(AMOUNTS_WIDTH) height=(height) role="img" aria-label=(title) {
                @for (i, (bar, v)) in bars.iter().zip(&values).enumerate() {
                    @let y = i as f64 * row + 4.0;
                    @let (from, to) = (x(0.0).min(x(*v)), x(0.0).max(x(*v)));
                    text.label x=(label_w - 8.0) y=(y + 16.0) text-anchor="end" { (bar.label) }
                    rect class=(bar.class) x=(from) y=(y) width=((to - from).max(1.0)) height=(row - 10.0) {
                        title { (bar.label) ": " (grouped(&bar.value.to_string())) " " (unit) }
                    }
                    text.value x=(to + 6.0) y=(y + 16.0) { (grouped(&bar.value.to_string())) " " (unit) }
                }
                line.baseline x1=(x(0.0)) x2=(x(0.0)) y1="0" y2=(height - 22.0) {}
                text.axis x=(x(0.0)) y=(height - 6.0) text-anchor="middle" { "0 " (unit) }
            }
        }
    }
}

/// A confidence interval on a number line that shows zero: a lift and
/// how sure it is, with the value that was billed marked.
pub struct Interval<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub low: f64,
    pub estimate: f64,
    pub high: f64,
    /// The value billed (the lower bound or the estimate, never below 0).
    pub billed: f64,
    pub billed_label: &'a str,
}

pub fn interval(i: &Interval<'_>) -> Markup {
    let lo = i.low.min(0.0);
    let hi = i.high.max(0.0);
    let pad = ((hi - lo) * 0.08).max(0.5);
    let (lo, hi) = (lo - pad, hi + pad);
    let (left, right, height) = (24.0, 24.0, 120.0);
    let plot_w = WIDTH - left - right;
    let x = |v: f64| left + (v - lo) / (hi - lo) * plot_w;
    let step = nice_step(hi - lo, 6.0);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let axis_y = 84.0;
    let figure = |v: f64| format!("{v:.1}");
    html! {
        figure.chart {
            figcaption { (i.title) }
            svg viewBox=(format!("0 0 {WIDTH} {height}")) width=(WIDTH) height=(height) role="img" aria-label=(i.title) {
                line.baseline x1=(left) x2=(WIDTH - right) y1=(axis_y) y2=(axis_y) {}
                @for k in first..=last {
                    @let v = k as f64 * step;
                    line.grid x1=(x(v)) x2=(x(v)) y1=(axis_y - 4.0) y2=(axis_y + 4.0) {}
                    text.axis x=(x(v)) y=(axis_y + 18.0) text-anchor="middle" { (tick(v, step)) }
                }
                text.axis x=(WIDTH - right) y=(height - 2.0) text-anchor="end" { (i.unit) }
                line.zero x1=(x(0.0)) x2=(x(0.0)) y1="8" y2=(axis_y) {}
                text.axis x=(x(0.0) + 4.0) y="16" { "no lift" }
                rect.interval x=(x(i.low)) y="40" width=((x(i.high) - x(i.low)).max(2.0)) height="14" rx="7" {
                    title { "interval " (figure(i.low)) " to " (figure(i.high)) " " (i.unit) }
                }
                circle.estimate cx=(x(i.estimate)) cy="47" r="6" {
                    title { "estimate " (figure(i.estimate)) " " (i.unit) }
                }
                text.value x=(x(i.low)) y="34" text-anchor="middle" { "low " (figure(i.low)) }
                text.value x=(x(i.high)) y="34" text-anchor="middle" { "high " (figure(i.high)) }
                text.value x=(x(i.estimate)) y="70" text-anchor="middle" { "estimate " (figure(i.estimate)) }
                path.billed d=(format!("M {} 58 l -6 -10 h 12 z", x(i.billed))) {
                    title { (i.billed_label) ": " (figure(i.billed)) " " (i.unit) }
                }
            }
            ul.legend {
                li { span.swatch.interval {} "interval: " (figure(i.low)) " to " (figure(i.high)) " " (i.unit) }
                li { span.swatch.estimate {} "estimate: " (figure(i.estimate)) }
                li { span.swatch.billed {} (i.billed_label) ": " strong { (figure(i.billed)) } " (never below zero)" }
            }
        }
    }
}

/// Spending against a budget: the limit is the full width, the warning
/// threshold a mark.
pub fn budget(label: &str, spent: Decimal, limit: Decimal, warn_at: Option<Decimal>) -> Markup {
    let f = |d: Decimal| d.to_f64().unwrap_or(0.0);
    let full = f(limit).max(f(spent)).max(f64::MIN_POSITIVE);
    let (left, plot_w, height) = (0.0, WIDTH - 260.0, 30.0);
    let x = |v: f64| left + v / full * plot_w;
    let class = if spent >= limit {
        "bad"
    } else if warn_at.is_some_and(|w| spent >= w) {
        "warn"
    } else {
        "good"
    };
    html! {
        svg.budget viewBox=(format!("0 0 {WIDTH} {height}")) width=(WIDTH) height=(height) role="img"
            aria-label=(format!("{label}: {spent} of {limit} USD")) {
            rect.track x=(left) y="4" width=(x(f(limit))) height="18" rx="3" {}
            rect class=(class) x=(left) y="4" width=(x(f(spent)).max(1.0)) height="18" rx="3" {}
            @if let Some(w) = warn_at {
                line.warnline x1=(x(f(w))) x2=(x(f(w))) y1="0" y2="26" { title { "warning at " (w) " USD" } }
            }
            text.value x=(plot_w + 10.0) y="18" { (grouped(&spent.to_string())) " of " (grouped(&limit.to_string())) " USD" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(nice_step(7.0, 4.0), 2.0);
        assert_eq!(nice_step(0.9, 6.0), 0.2);
        assert_eq!(nice_step(0.0, 4.0), 1.0);
        assert_eq!(tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(tick(12000.0, 2000.0), "12,000");
    }
}
