//! `--plot FILE.svg`: the run second by second: latency percentiles, throughput, and the
//! CPU of the load generator and of the server (plus server memory when it was sampled).
//!
//! plotters is built with the SVG backend only and no font features: text goes into the
//! SVG as `<text>` for the viewer to render, so nothing here needs fontconfig or a font
//! file. Text widths are then guessed, so labels are kept few and short.

use crate::error::Error;
use crate::report::Report;
use crate::stats::Second;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "sans-serif";
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

pub fn draw(report: &Report, path: &Path) -> Result<(), Error> {
    draw_inner(report, path).map_err(Error::Plot)
}

fn draw_inner(report: &Report, path: &Path) -> Result<(), String> {
    let seconds = &report.per_second;
    let with_rss = seconds.iter().any(|s| s.server_rss_kib.is_some());
    let panels_count = if with_rss { 4 } else { 3 };
    let height = 260 * panels_count as u32 + 40;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title = format!("confab-loadgen {}: {}", report.scenario, params_line(report));
    let root = root.titled(&title, (FONT, 16)).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((panels_count, 1));
    let x_max = (seconds.len() as f64).max(1.0);
    let mid = |s: &Second| s.t as f64 + 0.5;

    let latency_line = |name, color, f: fn(&Second) -> Option<f64>| -> Series {
        (name, color, seconds.iter().filter_map(|s| f(s).map(|v| (mid(s), v.max(0.001)))).collect())
    };
    let latency = vec![
        latency_line("p50", BLUE, |s| s.p50_ms),
        latency_line("p99", RED, |s| s.p99_ms),
        latency_line("p99.9", MAGENTA, |s| s.p999_ms),
        latency_line("receipt p99", GREEN, |s| s.receipt_p99_ms),
    ];
    panel(&panels[0], "latency per second (ms, log)", x_max, latency, true, &report.phases)?;

    let count_line = |name, color, f: fn(&Second) -> u64| -> Series {
        (name, color, seconds.iter().map(|s| (mid(s), f(s) as f64)).collect())
    };
    let throughput = vec![
        count_line("delivered/s", BLUE, |s| s.delivered),
        count_line("sent/s", RED, |s| s.sent),
        count_line("receipted/s", GREEN, |s| s.receipted),
        count_line("completed/s", MAGENTA, |s| s.completed),
    ];
    panel(&panels[1], "throughput per second", x_max, throughput, false, &report.phases)?;

    let cpu_line = |name, color, f: fn(&Second) -> Option<f64>| -> Series {
        (name, color, seconds.iter().filter_map(|s| f(s).map(|v| (mid(s), v))).collect())
    };
    let cpu =
        vec![cpu_line("loadgen", RED, |s| s.loadgen_cpu_percent), cpu_line("server", BLUE, |s| s.server_cpu_percent)];
    panel(&panels[2], "CPU % (100 = one core)", x_max, cpu, false, &report.phases)?;

    if with_rss {
        let rss = vec![(
            "server RSS",
            BLUE,
            seconds.iter().filter_map(|s| s.server_rss_kib.map(|kib| (mid(s), kib as f64 / 1024.0))).collect(),
        )];
        panel(&panels[3], "server RSS (MiB)", x_max, rss, false, &report.phases)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn params_line(report: &Report) -> String {
    match &report.params {
        serde_json::Value::Object(map) => {
            map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        }
        other => other.to_string(),
    }
}

/// One chart: the non-empty series as lines, phase starts as grey verticals.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    x_max: f64,
    series: Vec<Series>,
    log: bool,
    phases: &[(&'static str, f64)],
) -> Result<(), String> {
    let series: Vec<Series> =
        series.into_iter().filter(|(_, _, points)| points.iter().any(|(_, y)| *y > 0.0)).collect();
    let y_max = series.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)).fold(0.0f64, f64::max);
    let y_min = series.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)).fold(f64::MAX, f64::min);
    let mut builder = ChartBuilder::on(area);
    builder.margin(8).caption(caption, (FONT, 14)).x_label_area_size(24).y_label_area_size(70);
    if log {
        let (lo, hi) = if y_max > 0.0 { ((y_min / 2.0).max(0.001), y_max * 2.0) } else { (0.01, 10.0) };
        // Labels at 1-2-5 steps: a log axis labels only powers of ten by default, and a range
        // such as 200-900 ms has none.
        let y_axis = (lo..hi).log_scale().with_key_points(one_two_five(lo, hi));
        let mut chart = builder.build_cartesian_2d(0f64..x_max, y_axis).map_err(|e| e.to_string())?;

        chart.configure_mesh().x_desc("seconds").y_labels(6).draw().map_err(|e| e.to_string())?;
        for (name, x) in phases {
            let line = PathElement::new(vec![(*x, lo), (*x, hi)], BLACK.mix(0.3));
            chart.draw_series(std::iter::once(line)).map_err(|e| e.to_string())?;
            let label = Text::new(name.to_string(), (*x + 0.1, hi / 1.5), (FONT, 11));
            chart.draw_series(std::iter::once(label)).map_err(|e| e.to_string())?;
        }
        draw_lines(&mut chart, series)
    } else {
        let hi = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut chart = builder.build_cartesian_2d(0f64..x_max, 0f64..hi).map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("seconds").y_labels(6).draw().map_err(|e| e.to_string())?;
        for (_, x) in phases {
            let line = PathElement::new(vec![(*x, 0.0), (*x, hi)], BLACK.mix(0.3));
            chart.draw_series(std::iter::once(line)).map_err(|e| e.to_string())?;
        }
        draw_lines(&mut chart, series)
    }
}

fn draw_lines<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>, series: Vec<Series>) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate<From = (f64, f64)>,
{
    if series.is_empty() {
        return Ok(());
    }
    for (name, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.5))
        .label_font((FONT, 11))
        .draw()
        .map_err(|e| e.to_string())
}

/// 1, 2 and 5 times the powers of ten within `lo..=hi`.
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut points = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for step in [1.0, 2.0, 5.0] {
            let point = decade * step;
            if (lo..=hi).contains(&point) {
                points.push(point);
            }
        }
        decade *= 10.0;
    }
    points
}
