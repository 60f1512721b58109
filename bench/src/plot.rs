//! The growth curves as a PNG (`ovnet-bench growth --plot FILE.png`): a grid of small line
//! charts ([`Panel`]) drawn with plotters' bitmap backend, and [`growth_panels`], which turns
//! the two series of `ovnet-bench growth` into them: packet rate, CPU per packet and agent
//! memory against the number of networks (top row) and of peers (bottom row), on log x axes.
//!
//! Text is drawn with DejaVu Sans from Debian's `fonts-dejavu-core` (listed in
//! `deploy/deps.sh`), read at run time and handed to plotters' pure-Rust `ab_glyph` renderer,
//! so the build needs no fontconfig or FreeType.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::growth::GrowthStep;
use crate::peers::PeerStep;

/// The font every text is drawn in.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The picture's size in pixels: six panels of 400 × 330 under a title.
pub const SIZE: (u32, u32) = (1200, 700);
/// Panels per row.
const COLUMNS: usize = 3;
/// The series' colours, in order (Tableau's first three: apart for colour-blind readers too).
const COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];
/// Room above the highest point, for the legend.
const HEADROOM: f64 = 1.45;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its legend.
    pub name: String,
    /// (x, y) points, x ascending; x > 0 (the x axis is logarithmic).
    pub points: Vec<(f64, f64)>,
}

/// One chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Its caption.
    pub title: String,
    /// What x counts.
    pub x_label: String,
    /// What y measures, with its unit.
    pub y_label: String,
    /// Its lines, at most [`COLOURS`] of them.
    pub series: Vec<Series>,
}

impl Panel {
    fn new(title: &str, x_label: &str, y_label: &str, series: Vec<Series>) -> Panel {
        Panel {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            series,
        }
    }

    /// The x values of the points, ascending, once each: the x axis' labels.
    fn xs(&self) -> Vec<f64> {
        let mut xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        xs
    }

    /// The x range, widened by a quarter on each side (on a log scale), and the y range from 0.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let xs = points().map(|p| p.0).filter(|x| *x > 0.0);
        let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(x), h.max(x)));
        let x = if lo <= hi {
            (lo / 1.25, hi * 1.25)
        } else {
            (1.0, 10.0)
        };
        let top = points().map(|p| p.1).fold(0.0, f64::max);
        let y = if top > 0.0 { top * HEADROOM } else { 1.0 };
        (x, (0.0, y))
    }
}

/// A series named `name` of the points of `steps` whose `y` is known.
fn series<T>(
    name: &str,
    steps: &[T],
    x: impl Fn(&T) -> f64,
    y: impl Fn(&T) -> Option<f64>,
) -> Series {
    Series {
        name: name.to_string(),
        points: steps.iter().filter_map(|s| Some((x(s), y(s)?))).collect(),
    }
}

/// The six panels of the growth figure: networks on top, peers below.
pub fn growth_panels(networks: &[GrowthStep], peers: &[PeerStep]) -> Vec<Panel> {
    let n = |s: &GrowthStep| f64::from(s.networks);
    let p = |s: &PeerStep| f64::from(s.hosts);
    let (by_networks, by_peers) = ("networks on 2 hosts", "peers (hosts on 1 network)");
    vec![
        Panel::new(
            "64 B UDP vs networks",
            by_networks,
            "kpps",
            vec![series("UDP through network 1", networks, n, |s| {
                s.cost.udp_kpps
            })],
        ),
        Panel::new(
            "CPU per packet vs networks",
            by_networks,
            "µs",
            vec![series("both agents, per UDP packet", networks, n, |s| {
                s.cost.cpu_us_per_packet
            })],
        ),
        Panel::new(
            "agent memory vs networks",
            by_networks,
            "MiB",
            vec![series("RSS, mean of the agents", networks, n, |s| {
                s.cost.rss_mib()
            })],
        ),
        Panel::new(
            "64 B packet rates vs peers",
            by_peers,
            "kpps",
            vec![
                series("UDP host 1 → host 2", peers, p, |s| s.cost.udp_kpps),
                series("broadcasts sent", peers, p, |s| {
                    Some(s.flood.as_ref()?.sent_kpps)
                }),
                series("broadcasts received (slowest)", peers, p, |s| {
                    Some(s.flood.as_ref()?.slowest_kpps)
                }),
            ],
        ),
        Panel::new(
            "CPU per packet vs peers",
            by_peers,
            "µs",
            vec![
                series("UDP, the two agents", peers, p, |s| {
                    s.cost.cpu_us_per_packet
                }),
                series("flood, head end per copy", peers, p, |s| {
                    s.flood.as_ref()?.head_end_us_per_copy
                }),
                series("flood, all agents per delivery", peers, p, |s| {
                    s.flood.as_ref()?.cpu_us_per_delivered
                }),
            ],
        ),
        Panel::new(
            "agent memory vs peers",
            by_peers,
            "MiB",
            vec![series("RSS, mean of the agents", peers, p, |s| {
                s.cost.rss_mib()
            })],
        ),
    ]
}

/// Registers [`FONT`] as plotters' sans-serif, once.
fn font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT).map_err(|e| {
                format!("reading {FONT}: {e} (install fonts-dejavu-core: sudo ./deploy/deps.sh quickstart)")
            })?;
            // plotters keeps fonts for the life of the process: leak the one we register.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT} is not a font plotters can read"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Draws `panels`, [`COLUMNS`] to a row, into the PNG `path` of [`SIZE`].
pub fn draw(path: &Path, panels: &[Panel]) -> Result<()> {
    font()?;
    let fail = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root
        .titled("ovnet: cost as the work grows", ("sans-serif", 22))
        .map_err(|e| fail(&e))?;
    let rows = panels.len().div_ceil(COLUMNS).max(1);
    for (area, panel) in root.split_evenly((rows, COLUMNS)).iter().zip(panels) {
        let ((x0, x1), (y0, y1)) = panel.ranges();
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d((x0..x1).log_scale().with_key_points(panel.xs()), y0..y1)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc(panel.x_label.as_str())
            .y_desc(panel.y_label.as_str())
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| match *y {
                y if y >= 10.0 || y == 0.0 => format!("{y:.0}"),
                y => format!("{y:.1}"),
            })
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| fail(&e))?;
        for (s, colour) in panel.series.iter().zip(COLOURS) {
            chart
                .draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(|e| fail(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::growth::AgentCost;
    use crate::peers::FloodCost;

    fn cost(kpps: f64, us: f64, mib: u64) -> AgentCost {
        AgentCost {
            rss_kib: vec![mib * 1024, mib * 1024],
            udp_kpps: Some(kpps),
            cpu_us_per_packet: Some(us),
            ..AgentCost::default()
        }
    }

    fn sample() -> (Vec<GrowthStep>, Vec<PeerStep>) {
        let networks = [
            (1, 80.0, 6.0, 11),
            (16, 85.0, 5.5, 14),
            (128, 60.0, 5.0, 34),
        ]
        .into_iter()
        .map(|(n, k, u, m)| GrowthStep {
            networks: n,
            cost: cost(k, u, m),
        })
        .collect();
        let mut peers: Vec<PeerStep> = [(2, 90.0, 5.0, 8), (8, 88.0, 5.2, 9), (32, 85.0, 5.1, 10)]
            .into_iter()
            .map(|(h, k, u, m)| PeerStep {
                hosts: h,
                cost: cost(k, u, m),
                flood: Some(FloodCost {
                    sent_kpps: 200.0 / f64::from(h),
                    slowest_kpps: 150.0 / f64::from(h),
                    delivered_kpps: 150.0,
                    head_end_us_per_copy: Some(2.0 * f64::from(h)),
                    cpu_us_per_delivered: Some(4.0),
                }),
                diagnosis: None,
            })
            .collect();
        peers[2].flood = None;
        (networks, peers)
    }

    #[test]
    fn panels_hold_the_measured_points() {
        let (networks, peers) = sample();
        let panels = growth_panels(&networks, &peers);
        assert_eq!(panels.len(), 6);
        assert_eq!(
            panels[0].series[0].points,
            vec![(1.0, 80.0), (16.0, 85.0), (128.0, 60.0)]
        );
        assert_eq!(panels[2].series[0].points[2], (128.0, 34.0));
        // The 32-host step has no flood: its unicast point is there, its flood points are not.
        assert_eq!(panels[3].series[0].points.len(), 3);
        assert_eq!(panels[3].series[1].points, vec![(2.0, 100.0), (8.0, 25.0)]);
        assert_eq!(panels[4].series[1].points, vec![(2.0, 4.0), (8.0, 16.0)]);
        assert!(panels.iter().all(|p| p.series.len() <= COLOURS.len()));
        let ((x0, x1), (y0, y1)) = panels[0].ranges();
        assert!(x0 < 1.0 && x1 > 128.0 && y0 == 0.0 && y1 > 85.0);
        assert_eq!(panels[3].xs(), vec![2.0, 8.0, 32.0]);
        let empty = Panel::new("t", "x", "y", vec![]);
        assert_eq!(empty.ranges(), ((1.0, 10.0), (0.0, 1.0)));
    }

    #[test]
    fn draws_a_png_of_the_right_size() {
        if !Path::new(FONT).is_file() {
            ovnet_testbed::skip(format!(
                "no {FONT}: install fonts-dejavu-core (deploy/deps.sh)"
            ));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growth.png");
        let (networks, peers) = sample();
        draw(&path, &growth_panels(&networks, &peers)).unwrap();
        // Nothing measured still draws (empty axes), rather than fail.
        let blank = dir.path().join("blank.png");
        draw(&blank, &growth_panels(&[], &[])).unwrap();
        for p in [&path, &blank] {
            let decoder = png::Decoder::new(std::fs::File::open(p).unwrap());
            let reader = decoder.read_info().unwrap();
            let info = reader.info();
            assert_eq!((info.width, info.height), SIZE, "{}", p.display());
        }
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert!(bytes < 200 * 1024, "{bytes} bytes");
    }
}
