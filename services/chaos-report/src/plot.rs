//! The picture: responses per second per replica over the whole chaos run, one line per
//! replica process, failed requests per second in red, each phase as a shaded band and each
//! fault as a labelled vertical line.
//!
//! Inputs are the load generator's `--timeline` files (one JSON line per second) and an events
//! file the script writes, one event per line: `unix_ms<TAB>kind<TAB>label`, where kind is
//! `phase` (a phase starts), `fault` (something was done to the cluster) or `end`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

/// Arguments of `chaos-report plot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A load run's `--timeline` file (repeatable, one per phase).
    #[arg(long = "timeline", required = true)]
    pub timelines: Vec<PathBuf>,
    /// The events file (see the module docs).
    #[arg(long)]
    pub events: PathBuf,
    /// Write the picture as SVG here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write the picture as PNG here.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// TrueType font for the text; defaults to the first DejaVu Sans / Liberation Sans found.
    #[arg(long, env = "CHAOS_REPORT_FONT")]
    pub font: Option<PathBuf>,
    /// Title above the chart.
    #[arg(long, default_value = "Responses per second per replica")]
    pub title: String,
}

/// Where Debian (fonts-dejavu-core, fonts-liberation) and a few others put a plain sans font.
const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const FONT: &str = "chaos-sans";

#[derive(Debug, Deserialize)]
struct Tick {
    unix_ms: u64,
    #[serde(default)]
    by_replica: BTreeMap<String, u64>,
    #[serde(default)]
    failed: u64,
}

/// One event from the events file.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub unix_ms: u64,
    pub kind: String,
    pub label: String,
}

/// Parses the events file.
pub fn parse_events(text: &str) -> Result<Vec<Event>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let ms = f.next().unwrap_or_default();
            let unix_ms = ms
                .trim()
                .parse()
                .with_context(|| format!("event time {ms:?}"))?;
            Ok(Event {
                unix_ms,
                kind: f.next().unwrap_or("fault").to_string(),
                label: f.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The data to draw, in seconds since the first event or tick.
#[derive(Debug, Default)]
pub struct Picture {
    /// Replica name -> contiguous runs of (second, responses in that second).
    pub replicas: BTreeMap<String, Vec<Vec<(f64, f64)>>>,
    /// Contiguous runs of (second, failed requests in that second).
    pub failed: Vec<Vec<(f64, f64)>>,
    /// (start, end, name) of each phase.
    pub phases: Vec<(f64, f64, String)>,
    /// (second, label) of each fault.
    pub faults: Vec<(f64, String)>,
    pub x_max: f64,
    pub y_max: f64,
}

/// Turns ticks and events into series. A replica gets a point for every second of a load run
/// between its first and its last answer in that run (0 when it did not answer), so a dying
/// replica drops to zero instead of being joined to its next sighting; load runs are separate
/// runs of points.
fn build(runs: &[Vec<Tick>], events: &[Event]) -> Picture {
    let t0 = runs
        .iter()
        .flatten()
        .map(|t| t.unix_ms.saturating_sub(1000))
        .chain(events.iter().map(|e| e.unix_ms))
        .min()
        .unwrap_or(0);
    let sec = |ms: u64| (ms.saturating_sub(t0)) as f64 / 1000.0;
    let mut pic = Picture::default();
    for run in runs {
        let mut names: Vec<&String> = run.iter().flat_map(|t| t.by_replica.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let first = run.iter().position(|t| t.by_replica.contains_key(name));
            let last = run.iter().rposition(|t| t.by_replica.contains_key(name));
            let (Some(first), Some(last)) = (first, last) else {
                continue;
            };
            // Also show the second after the last answer at 0, so the drop is visible.
            let end = (last + 1).min(run.len() - 1);
            let points: Vec<(f64, f64)> = run[first..=end]
                .iter()
                .map(|t| {
                    let n = t.by_replica.get(name).copied().unwrap_or(0);
                    (sec(t.unix_ms) - 0.5, n as f64)
                })
                .collect();
            pic.y_max = points.iter().map(|p| p.1).fold(pic.y_max, f64::max);
            pic.replicas.entry(name.clone()).or_default().push(points);
        }
        pic.failed.push(
            run.iter()
                .map(|t| (sec(t.unix_ms) - 0.5, t.failed as f64))
                .collect(),
        );
        if let Some(last) = run.last() {
            pic.x_max = pic.x_max.max(sec(last.unix_ms));
        }
    }
    for e in events {
        pic.x_max = pic.x_max.max(sec(e.unix_ms));
    }
    let mut phase_starts: Vec<(f64, String)> = Vec::new();
    for e in events {
        match e.kind.as_str() {
            "phase" | "end" => phase_starts.push((sec(e.unix_ms), e.label.clone())),
            _ => pic.faults.push((sec(e.unix_ms), e.label.clone())),
        }
    }
    for (i, (start, name)) in phase_starts.iter().enumerate() {
        let is_end = events
            .iter()
            .any(|e| e.kind == "end" && e.label == *name && sec(e.unix_ms) == *start);
        if is_end {
            continue;
        }
        let end = phase_starts.get(i + 1).map_or(pic.x_max, |p| p.0);
        pic.phases.push((*start, end, name.clone()));
    }
    pic.y_max = pic.y_max.max(1.0);
    pic
}

/// Distinct, readable line colours (20, so a whole run rarely repeats one).
const COLORS: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(0, 128, 128),
    RGBColor(128, 128, 0),
    RGBColor(158, 218, 229),
    RGBColor(90, 50, 20),
];
const FAILED: RGBColor = RGBColor(214, 39, 40);
const FAULT: RGBColor = RGBColor(170, 30, 30);
const BANDS: [RGBColor; 2] = [RGBColor(244, 246, 250), RGBColor(228, 233, 242)];

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

/// Replicas in the order they first answered (ties by name, numbers compared as numbers), so
/// replicas alive at the same time get neighbouring, different colours.
fn replica_order(pic: &Picture) -> Vec<&String> {
    fn natural(name: &str) -> (String, u64) {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, tail) = name.split_at(name.len() - digits);
        (head.to_string(), tail.parse().unwrap_or(0))
    }
    let mut names: Vec<&String> = pic.replicas.keys().collect();
    let first = |n: &String| {
        pic.replicas[n]
            .iter()
            .flatten()
            .map(|p| p.0)
            .fold(f64::INFINITY, f64::min)
    };
    names.sort_by(|a, b| {
        first(a)
            .total_cmp(&first(b))
            .then_with(|| natural(a).cmp(&natural(b)))
    });
    names
}

/// Puts each label in the first row where it does not run into the previous label of that
/// row; `width` estimates a label's width in x units. Returns the row of each label.
pub fn label_rows(xs: &[(f64, usize)], width: f64, rows: usize) -> Vec<usize> {
    let mut ends = vec![f64::NEG_INFINITY; rows];
    xs.iter()
        .map(|(x, chars)| {
            let row = (0..rows)
                .find(|r| ends[*r] < *x)
                .unwrap_or_else(|| (0..rows).fold(0, |m, r| if ends[r] < ends[m] { r } else { m }));
            ends[row] = x + width * (*chars as f64 + 1.0);
            row
        })
        .collect()
}

/// The chart's drawing context: seconds on x, responses per second on y.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Where the chart's text goes, in chart units.
struct Layout {
    y_top: f64,
    /// x units per character of a 13-15 px label.
    per_char: f64,
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    pic: &Picture,
    title: &str,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (width, _) = root.dim_in_pixel();
    let legend_width = 230;
    let (chart_area, legend_area) = root.split_horizontally(width.saturating_sub(legend_width));
    let x_max = pic.x_max.max(1.0);
    // A label is about 8 px per character on a plot about 1400 px wide.
    let plot_px = f64::from(width.saturating_sub(legend_width + 100));
    let layout = Layout {
        y_top: pic.y_max * 1.6,
        per_char: x_max / plot_px * 8.0,
    };
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(title, (FONT, 26))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..layout.y_top)
        .map_err(err)?;
    draw_phases(&mut chart, pic, &layout)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start of the run")
        .y_desc("responses per second")
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    draw_faults(&mut chart, pic, &layout)?;
    let legend = draw_lines(&mut chart, pic)?;
    draw_legend(&legend_area, &legend)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Phases: shaded bands with their names at the top (two rows when they would touch).
fn draw_phases<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    pic: &Picture,
    layout: &Layout,
) -> Result<()> {
    let rows = label_rows(
        &pic.phases
            .iter()
            .map(|p| (p.0, p.2.chars().count()))
            .collect::<Vec<_>>(),
        layout.per_char,
        2,
    );
    for (i, (start, end, name)) in pic.phases.iter().enumerate() {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(*start, 0.0), (*end, layout.y_top)],
                BANDS[i % 2].filled(),
            )))
            .map_err(err)?;
        let y = layout.y_top * (0.985 - 0.04 * rows[i] as f64);
        chart
            .draw_series(std::iter::once(Text::new(
                name.clone(),
                (*start + layout.per_char * 0.5, y),
                (FONT, 16).into_font().color(&BLACK),
            )))
            .map_err(err)?;
    }
    Ok(())
}

/// Faults: a vertical line each, labels in up to six rows under the phase names.
fn draw_faults<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    pic: &Picture,
    layout: &Layout,
) -> Result<()> {
    let y_top = layout.y_top;
    let rows = label_rows(
        &pic.faults
            .iter()
            .map(|f| (f.0, f.1.chars().count()))
            .collect::<Vec<_>>(),
        layout.per_char * 0.85,
        6,
    );
    for (i, (x, label)) in pic.faults.iter().enumerate() {
        let y = y_top * (0.9 - 0.045 * rows[i] as f64);
        chart
            .draw_series(LineSeries::new(
                vec![(*x, 0.0), (*x, y + y_top * 0.01)],
                FAULT.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (*x + layout.per_char * 0.3, y + y_top * 0.015),
                (FONT, 13).into_font().color(&FAULT),
            )))
            .map_err(err)?;
    }
    Ok(())
}

/// One line per replica and the failed requests. Returns the legend's entries.
fn draw_lines<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    pic: &Picture,
) -> Result<Vec<(String, RGBColor)>> {
    let mut legend: Vec<(String, RGBColor)> = Vec::new();
    for (i, name) in replica_order(pic).into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for points in &pic.replicas[name] {
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(err)?;
        }
        legend.push((name.clone(), color));
    }
    for points in &pic.failed {
        if points.iter().any(|p| p.1 > 0.0) {
            chart
                .draw_series(LineSeries::new(points.clone(), FAILED.stroke_width(3)))
                .map_err(err)?;
        }
    }
    legend.push(("failed requests".to_string(), FAILED));
    legend.push(("fault".to_string(), FAULT));
    Ok(legend)
}

/// The legend on the right, outside the chart so it never covers a line.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &[(String, RGBColor)],
) -> Result<()> {
    let (step, font_size) = if legend.len() > 30 {
        (15, 12)
    } else {
        (22, 15)
    };
    area.draw(&Text::new(
        "replica (X-Served-By)",
        (6, 50),
        (FONT, 16).into_font(),
    ))
    .map_err(err)?;
    for (i, (name, color)) in legend.iter().enumerate() {
        let y = 80 + (i as i32) * step;
        let stroke = if *color == FAULT { 1 } else { 3 };
        area.draw(&PathElement::new(
            vec![(6, y + 7), (36, y + 7)],
            color.stroke_width(stroke),
        ))
        .map_err(err)?;
        area.draw(&Text::new(
            name.clone(),
            (44, y),
            (FONT, font_size).into_font(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

fn load_font(path: Option<&Path>) -> Result<()> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => FONT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow!(
                    "no font found (tried {}); install fonts-dejavu-core or pass --font",
                    FONT_CANDIDATES.join(", ")
                )
            })?,
    };
    let bytes = fs::read(&path).with_context(|| format!("reading font {}", path.display()))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a usable TrueType font", path.display()))
}

/// Runs `chaos-report plot`.
pub fn run(args: &Args) -> Result<()> {
    anyhow::ensure!(
        args.svg.is_some() || args.png.is_some(),
        "nothing to write: give --svg and/or --png"
    );
    load_font(args.font.as_deref())?;
    let mut runs = Vec::new();
    for path in &args.timelines {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let ticks: Vec<Tick> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing {}", path.display()))?;
        runs.push(ticks);
    }
    let events_text = fs::read_to_string(&args.events)
        .with_context(|| format!("reading {}", args.events.display()))?;
    let pic = build(&runs, &parse_events(&events_text)?);
    let size = (1800, 860);
    if let Some(path) = &args.svg {
        draw(
            SVGBackend::new(path, size).into_drawing_area(),
            &pic,
            &args.title,
        )?;
    }
    if let Some(path) = &args.png {
        draw(
            BitMapBackend::new(path, size).into_drawing_area(),
            &pic,
            &args.title,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(ms: u64, replicas: &[(&str, u64)], failed: u64) -> Tick {
        Tick {
            unix_ms: ms,
            by_replica: replicas.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            failed,
        }
    }

    #[test]
    fn a_replica_that_stops_answering_drops_to_zero_and_phases_span_to_the_next() {
        let run = vec![
            tick(11_000, &[("a", 10), ("b", 9)], 0),
            tick(12_000, &[("a", 12)], 0),
            tick(13_000, &[("a", 11), ("c", 4)], 2),
        ];
        let events = parse_events(
            "10000\tphase\t1 kill\n11500\tfault\tkill b\n13000\tphase\t2 roll\n14000\tend\tend\n",
        )
        .unwrap();
        let pic = build(&[run], &events);
        assert_eq!(pic.replicas["b"], vec![vec![(0.5, 9.0), (1.5, 0.0)]]);
        assert_eq!(pic.replicas["c"], vec![vec![(2.5, 4.0)]]);
        assert_eq!(pic.faults, vec![(1.5, "kill b".to_string())]);
        assert_eq!(
            pic.phases,
            vec![
                (0.0, 3.0, "1 kill".to_string()),
                (3.0, 4.0, "2 roll".to_string())
            ]
        );
        assert_eq!(pic.failed[0][2], (2.5, 2.0));
        assert_eq!(pic.y_max, 12.0);
    }

    #[test]
    fn labels_that_would_overlap_go_to_the_next_row() {
        // Each label is 5 characters of 1 unit: 0..6, then 3 overlaps, 10 fits the first row.
        let rows = label_rows(&[(0.0, 5), (3.0, 5), (10.0, 5), (4.0, 5)], 1.0, 2);
        assert_eq!(rows, vec![0, 1, 0, 1]);
    }

    #[test]
    fn replicas_are_ordered_by_first_answer_then_by_number() {
        let mut pic = Picture::default();
        pic.replicas.insert("api-10".into(), vec![vec![(5.0, 1.0)]]);
        pic.replicas.insert("api-9".into(), vec![vec![(5.0, 1.0)]]);
        pic.replicas.insert("api-2".into(), vec![vec![(1.0, 1.0)]]);
        let order: Vec<&str> = replica_order(&pic).iter().map(|s| s.as_str()).collect();
        assert_eq!(order, vec!["api-2", "api-9", "api-10"]);
    }

    #[test]
    fn events_need_a_numeric_time() {
        assert!(parse_events("soon\tfault\tx\n").is_err());
    }
}
