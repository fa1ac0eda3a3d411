//! `imgate compare`: scenarios through the comparison lab ([`crate::lab`]),
//! shown as side-by-side tables, JSON, or SVG charts, with a progress bar
//! per model while they run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::lab::{self, Report, Scenario, scenario::BUILT_IN};

pub async fn run(names: &[String], json: bool, svg: Option<&Path>, list: bool) -> anyhow::Result<()> {
    if list {
        for (name, _) in BUILT_IN {
            let s = Scenario::find(name)?;
            println!("{name:<18} {}", s.description);
        }
        return Ok(());
    }
    // Every file is read before anything runs: a typo fails at once.
    let scenarios: Vec<Scenario> = if names.is_empty() {
        BUILT_IN.iter().map(|(n, _)| Scenario::find(n)).collect::<Result<_, _>>()?
    } else {
        names.iter().map(|n| Scenario::find(n)).collect::<Result<_, _>>()?
    };
    let mut reports = Vec::new();
    for scenario in &scenarios {
        let report = run_one(scenario).await?;
        if !json {
            println!("{}", report.to_table());
        }
        if let Some(path) = svg {
            let path = svg_path(path, &scenario.name, scenarios.len() > 1);
            let chart = lab::chart::svg(&report).map_err(anyhow::Error::msg)?;
            std::fs::write(&path, chart).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("chart written to {}", path.display());
        }
        reports.push(report);
    }
    if json {
        let text = match reports.as_slice() {
            [one] => serde_json::to_string_pretty(one)?,
            all => serde_json::to_string_pretty(all)?,
        };
        println!("{text}");
    }
    Ok(())
}

/// One scenario through both models, a progress bar per model (drawn only
/// when standard error is a terminal).
async fn run_one(scenario: &Scenario) -> anyhow::Result<Report> {
    let style =
        ProgressStyle::with_template("{prefix:>8} [{bar:40}] {msg}").expect("a valid template").progress_chars("=> ");
    let multi = indicatif::MultiProgress::new();
    let bars: Vec<(lab::Model, ProgressBar)> = lab::Model::ALL
        .into_iter()
        .map(|model| {
            let bar = multi.add(ProgressBar::new(1000).with_style(style.clone()));
            bar.set_prefix(model.to_string());
            (model, bar)
        })
        .collect();
    let progress = |p: lab::Progress| {
        let Some((_, bar)) = bars.iter().find(|(m, _)| *m == p.model) else { return };
        bar.set_position((p.at.as_secs_f64() / p.end.as_secs_f64().max(1.0) * 1000.0) as u64);
        bar.set_message(format!("{}: {} of {}", scenario.name, clock(p.at), clock(p.end)));
    };
    let report = lab::compare(scenario, &progress).await.with_context(|| format!("scenario {}", scenario.name));
    multi.clear().ok();
    report
}

fn clock(d: Duration) -> String {
    lab::report::human_secs(d.as_secs_f64())
}

/// `chart.svg` → `chart-mailing-list.svg` when several scenarios share it.
fn svg_path(path: &Path, scenario: &str, several: bool) -> PathBuf {
    if !several {
        return path.to_path_buf();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("compare");
    path.with_file_name(format!("{stem}-{scenario}.svg"))
}
