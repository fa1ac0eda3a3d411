//! The report as an SVG chart (plotters): per party, the bytes it stored at
//! most and the bytes that crossed its link, one bar per model, on a log
//! scale so that a notification and a message copy both show.

use plotters::prelude::*;

use super::report::{Report, bytes};

const COLOURS: [RGBColor; 3] = [RGBColor(0xd9, 0x5f, 0x02), RGBColor(0x1b, 0x9e, 0x77), RGBColor(0x75, 0x70, 0xb3)];

/// Renders `report` as an SVG document.
pub fn svg(report: &Report) -> Result<String, String> {
    let parties: Vec<String> =
        report.models.first().map(|m| m.parties.iter().map(|p| p.domain.clone()).collect()).unwrap_or_default();
    let width = (160 + parties.len() as u32 * 90).clamp(640, 4000);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, 760)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let title = format!("imgate compare: {}", report.scenario);
        let root = root.titled(&title, ("sans-serif", 22)).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((2, 1));
        let stored = |m: &super::ModelReport, i: usize| m.parties[i].stored_bytes_peak;
        let moved = |m: &super::ModelReport, i: usize| m.parties[i].network.bytes_in + m.parties[i].network.bytes_out;
        panel(&panels[0], report, &parties, "bytes stored (peak), per party", &stored)?;
        panel(&panels[1], report, &parties, "bytes over the network at each party's link", &moved)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
    parties: &[String],
    caption: &str,
    value: &dyn Fn(&super::ModelReport, usize) -> u64,
) -> Result<(), String> {
    let max = report.models.iter().flat_map(|m| (0..m.parties.len()).map(|i| value(m, i))).max().unwrap_or(1).max(10);
    // One slot per (party, model); a party's name goes under its first. The
    // headroom above the tallest bar is the legend's.
    let models = report.models.len().max(1);
    let slots = parties.len().max(1) * models;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((0..slots - 1).into_segmented(), (1f64..(max as f64) * 40.0).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(slots)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) if i % models == 0 => parties.get(i / models).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| bytes(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    let models = report.models.len().max(1);
    for (k, m) in report.models.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let bars = (0..m.parties.len()).map(|i| {
            let slot = i * models + k;
            let top = (value(m, i) as f64).max(1.0);
            Rectangle::new([(SegmentValue::Exact(slot), 1.0), (SegmentValue::Exact(slot + 1), top)], colour.filled())
        });
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(m.model.to_string())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}
