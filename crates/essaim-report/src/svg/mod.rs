//! Small SVG charts for `essaim report`: bars and lines over a category or a linear x
//! axis, with ticks, axis labels, a title, a legend and labelled reference lines.
//!
//! Why hand-written rather than a plotting crate: the report needs four simple chart
//! shapes, and drawing them here takes a few hundred lines and no dependency. The output
//! is deterministic (two reports of the same data are byte-identical, so they diff), and
//! every piece of text goes through one escaping function, `escape`, so a worker name
//! or a counter name cannot break the document.
//!
//! Coordinates: on a category axis, category `i` spans `[i, i + 1]` in data units, so a
//! point at `x = i` is drawn in the middle of its slot and a reference line at `x = i + 1`
//! sits on the slot's right edge. On a linear axis, a bar at `x` spans `[x, x + width]`.

mod text;

use std::fmt::Write;
use text::nice_ticks;
pub(crate) use text::{escape, format_number};
use text::{px, shorten};

/// Colours of the series, in order; chosen to stay distinct for colour-blind readers.
pub const PALETTE: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

/// Colour of reference lines.
const MARKER_COLOUR: &str = "#444444";

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 340.0;
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 52.0;
const MARGIN_BOTTOM: f64 = 52.0;
/// Approximate advance of one character of the 11 px labels, for layout.
const CHAR_WIDTH: f64 = 6.4;
/// Ticks the axes aim for.
const TARGET_TICKS: usize = 6;
/// Longest category label drawn before it is cut with an ellipsis.
const MAX_LABEL_CHARS: usize = 18;

/// What the x axis measures.
#[derive(Debug, Clone)]
pub enum XAxis {
    /// One slot per label; a point's x is its slot's index.
    Categories(Vec<String>),
    /// Numbers; a bar at `x` is `bar_width` wide (in x units), starting at `x`.
    Linear {
        /// Width of every bar, in x units.
        bar_width: f64,
    },
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// Bars from zero; several bar series share each slot side by side.
    Bars,
    /// A line through the points, in x order.
    Line,
}

/// One named set of points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// A CSS colour.
    pub colour: &'static str,
    /// Bars or line.
    pub kind: SeriesKind,
    /// `(x, y)` in data units.
    pub points: Vec<(f64, f64)>,
}

/// Where a reference line is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MarkerAt {
    /// A vertical line at this x.
    X(f64),
    /// A horizontal line at this y.
    Y(f64),
}

/// A labelled, dashed reference line (a percentile, a mean).
#[derive(Debug, Clone)]
pub struct Marker {
    /// Where.
    pub at: MarkerAt,
    /// Its label, drawn next to it.
    pub label: String,
}

/// A chart: axes, series and reference lines.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Drawn above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Along the y axis.
    pub y_label: String,
    /// Categories or numbers.
    pub x_axis: XAxis,
    /// Drawn in order, bars first.
    pub series: Vec<Series>,
    /// Reference lines.
    pub markers: Vec<Marker>,
}

/// A linear map from a data interval to a pixel interval.
#[derive(Debug, Clone, Copy)]
struct Scale {
    data_min: f64,
    data_max: f64,
    pixel_min: f64,
    pixel_max: f64,
}

impl Scale {
    fn map(&self, value: f64) -> f64 {
        let span = self.data_max - self.data_min;
        if span <= 0.0 || !span.is_finite() {
            return self.pixel_min;
        }
        self.pixel_min + (value - self.data_min) / span * (self.pixel_max - self.pixel_min)
    }
}

impl Chart {
    /// Returns the chart as an `<svg>` element (for inlining in HTML).
    pub fn to_svg(&self) -> String {
        svg_root(WIDTH, HEIGHT, &self.title, &self.body())
    }

    /// Returns the drawing, without the `<svg>` root, in a `WIDTH` × `HEIGHT` box.
    fn body(&self) -> String {
        let plot_left = MARGIN_LEFT;
        let plot_right = WIDTH - MARGIN_RIGHT;
        let plot_top = MARGIN_TOP;
        let plot_bottom = HEIGHT - MARGIN_BOTTOM;
        let (x_min, x_max, x_ticks) = self.x_domain();
        let (y_min, y_max, y_ticks) = self.y_domain();
        let x_scale = Scale {
            data_min: x_min,
            data_max: x_max,
            pixel_min: plot_left,
            pixel_max: plot_right,
        };
        let y_scale = Scale {
            data_min: y_min,
            data_max: y_max,
            pixel_min: plot_bottom,
            pixel_max: plot_top,
        };
        let mut out = String::new();
        let _ = write!(
            out,
            r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
            px(WIDTH),
            px(HEIGHT)
        );
        let _ = write!(
            out,
            r##"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"##,
            px(WIDTH / 2.0),
            escape(&self.title)
        );
        self.draw_legend(&mut out);
        // Grid and y ticks.
        for tick in &y_ticks {
            let y = y_scale.map(*tick);
            let _ = write!(
                out,
                r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#e4e4e4"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                px(plot_left),
                px(plot_right),
                px(plot_left - 6.0),
                px(y + 4.0),
                escape(&format_number(*tick)),
                y = px(y)
            );
        }
        self.draw_x_ticks(&mut out, x_scale, &x_ticks);
        let has_points = self.series.iter().any(|series| !series.points.is_empty());
        if has_points {
            self.draw_bars(&mut out, x_scale, y_scale);
            self.draw_lines(&mut out, x_scale, y_scale);
        } else {
            let _ = write!(
                out,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#777777">no data yet</text>"##,
                px((plot_left + plot_right) / 2.0),
                px((plot_top + plot_bottom) / 2.0)
            );
        }
        self.draw_markers(&mut out, x_scale, y_scale);
        // Axes on top of the bars.
        let _ = write!(
            out,
            r##"<path d="M{} {}V{}H{}" fill="none" stroke="#444444"/>"##,
            px(plot_left),
            px(plot_top),
            px(plot_bottom),
            px(plot_right)
        );
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle">{}</text>"##,
            px((plot_left + plot_right) / 2.0),
            px(HEIGHT - 12.0),
            escape(&self.x_label)
        );
        let _ = write!(
            out,
            r##"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"##,
            px((plot_top + plot_bottom) / 2.0),
            escape(&self.y_label)
        );
        out
    }

    /// Returns the x domain and its ticks (no ticks on a category axis).
    fn x_domain(&self) -> (f64, f64, Vec<f64>) {
        match &self.x_axis {
            XAxis::Categories(labels) => (0.0, labels.len().max(1) as f64, Vec::new()),
            XAxis::Linear { bar_width } => {
                let mut low = f64::INFINITY;
                let mut high = f64::NEG_INFINITY;
                for series in &self.series {
                    let extra = if series.kind == SeriesKind::Bars {
                        bar_width.max(0.0)
                    } else {
                        0.0
                    };
                    for (x, _) in series.points.iter().filter(|(x, _)| x.is_finite()) {
                        low = low.min(*x);
                        high = high.max(x + extra);
                    }
                }
                for marker in &self.markers {
                    if let MarkerAt::X(x) = marker.at
                        && x.is_finite()
                    {
                        low = low.min(x);
                        high = high.max(x);
                    }
                }
                if !low.is_finite() {
                    (low, high) = (0.0, 1.0);
                }
                let ticks = nice_ticks(low, high, TARGET_TICKS);
                (ticks[0], ticks[ticks.len() - 1], ticks)
            }
        }
    }

    /// Returns the y domain (always including zero) and its ticks.
    fn y_domain(&self) -> (f64, f64, Vec<f64>) {
        let mut low: f64 = 0.0;
        let mut high: f64 = 0.0;
        let ys = self
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|(_, y)| *y));
        let marker_ys = self.markers.iter().filter_map(|marker| match marker.at {
            MarkerAt::Y(y) => Some(y),
            MarkerAt::X(_) => None,
        });
        for y in ys.chain(marker_ys).filter(|y| y.is_finite()) {
            low = low.min(y);
            high = high.max(y);
        }
        if high <= low {
            high = low + 1.0;
        }
        let ticks = nice_ticks(low, high, TARGET_TICKS);
        (ticks[0], ticks[ticks.len() - 1], ticks)
    }

    /// Draws the x ticks: every category that has room for its label, or the numbers.
    fn draw_x_ticks(&self, out: &mut String, x_scale: Scale, x_ticks: &[f64]) {
        let plot_bottom = HEIGHT - MARGIN_BOTTOM;
        let mut tick = |x: f64, label: &str| {
            let _ = write!(
                out,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#444444"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
                px(plot_bottom),
                px(plot_bottom + 4.0),
                px(plot_bottom + 17.0),
                escape(label),
                x = px(x)
            );
        };
        match &self.x_axis {
            XAxis::Categories(labels) => {
                let widest = labels
                    .iter()
                    .map(|label| label.chars().count().min(MAX_LABEL_CHARS + 1))
                    .max()
                    .unwrap_or(1) as f64;
                let room = (WIDTH - MARGIN_RIGHT - MARGIN_LEFT) / (widest * CHAR_WIDTH + 8.0);
                let every = (labels.len() as f64 / room.max(1.0)).ceil().max(1.0) as usize;
                for (index, label) in labels.iter().enumerate().step_by(every) {
                    tick(x_scale.map(index as f64 + 0.5), &shorten(label));
                }
            }
            XAxis::Linear { .. } => {
                for value in x_ticks {
                    tick(x_scale.map(*value), &format_number(*value));
                }
            }
        }
    }

    fn draw_legend(&self, out: &mut String) {
        let mut x = MARGIN_LEFT;
        for series in &self.series {
            let _ = write!(
                out,
                r##"<rect x="{}" y="30" width="12" height="12" fill="{}"/><text x="{}" y="40">{}</text>"##,
                px(x),
                series.colour,
                px(x + 16.0),
                escape(&series.name)
            );
            x += 16.0 + series.name.chars().count() as f64 * CHAR_WIDTH + 18.0;
        }
    }

    fn draw_bars(&self, out: &mut String, x_scale: Scale, y_scale: Scale) {
        let bar_series: Vec<&Series> = self
            .series
            .iter()
            .filter(|series| series.kind == SeriesKind::Bars)
            .collect();
        if bar_series.is_empty() {
            return;
        }
        let slot_width = match &self.x_axis {
            XAxis::Categories(_) => 1.0,
            XAxis::Linear { bar_width } => bar_width.max(0.0),
        };
        // Bars of a slot fill 80% of it, side by side; the rest is the gap between slots.
        let group_width = slot_width * 0.8;
        let bar_width = group_width / bar_series.len() as f64;
        let zero = y_scale.map(0.0);
        for (position, series) in bar_series.iter().enumerate() {
            for (x, y) in series
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
            {
                let start = x + slot_width * 0.1 + bar_width * position as f64;
                let left = x_scale.map(start);
                let right = x_scale.map(start + bar_width);
                let top = y_scale.map(*y);
                let _ = write!(
                    out,
                    r##"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>"##,
                    px(left),
                    px(top.min(zero)),
                    px((right - left).max(0.5)),
                    px((zero - top).abs()),
                    series.colour,
                    escape(&series.name),
                    escape(&format_number(*y))
                );
            }
        }
    }

    fn draw_lines(&self, out: &mut String, x_scale: Scale, y_scale: Scale) {
        let centre = match self.x_axis {
            XAxis::Categories(_) => 0.5,
            XAxis::Linear { .. } => 0.0,
        };
        for series in self.series.iter().filter(|s| s.kind == SeriesKind::Line) {
            let mut points: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{},{}", px(x_scale.map(x + centre)), px(y_scale.map(*y))))
                .collect();
            let _ = write!(
                out,
                r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"##,
                path.join(" "),
                series.colour
            );
            for (x, y) in &points {
                let _ = write!(
                    out,
                    r##"<circle cx="{}" cy="{}" r="2.5" fill="{}"><title>{}: {}</title></circle>"##,
                    px(x_scale.map(x + centre)),
                    px(y_scale.map(*y)),
                    series.colour,
                    escape(&series.name),
                    escape(&format_number(*y))
                );
            }
        }
    }

    fn draw_markers(&self, out: &mut String, x_scale: Scale, y_scale: Scale) {
        let (plot_top, plot_bottom) = (MARGIN_TOP, HEIGHT - MARGIN_BOTTOM);
        let (plot_left, plot_right) = (MARGIN_LEFT, WIDTH - MARGIN_RIGHT);
        for (index, marker) in self.markers.iter().enumerate() {
            match marker.at {
                MarkerAt::X(x) => {
                    let x = x_scale.map(x);
                    // Labels are stacked so markers at the same x stay readable.
                    let label_y = plot_top + 12.0 + 13.0 * index as f64;
                    let anchor_end = x > (plot_left + plot_right) / 2.0;
                    let _ = write!(
                        out,
                        r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{MARKER_COLOUR}" stroke-dasharray="4 3"/><text x="{}" y="{}" text-anchor="{}" fill="{MARKER_COLOUR}" stroke="#ffffff" stroke-width="3" paint-order="stroke">{}</text>"##,
                        px(plot_top),
                        px(plot_bottom),
                        px(if anchor_end { x - 4.0 } else { x + 4.0 }),
                        px(label_y),
                        if anchor_end { "end" } else { "start" },
                        escape(&marker.label),
                        x = px(x)
                    );
                }
                MarkerAt::Y(y) => {
                    let y = y_scale.map(y);
                    let _ = write!(
                        out,
                        r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{MARKER_COLOUR}" stroke-dasharray="4 3"/><text x="{}" y="{}" text-anchor="end" fill="{MARKER_COLOUR}" stroke="#ffffff" stroke-width="3" paint-order="stroke">{}</text>"##,
                        px(plot_left),
                        px(plot_right),
                        px(plot_right - 4.0),
                        px(y - 4.0),
                        escape(&marker.label),
                        y = px(y)
                    );
                }
            }
        }
    }
}

/// Returns charts side by side as one `<svg>` element.
pub fn row_to_svg(title: &str, charts: &[Chart]) -> String {
    let mut body = String::new();
    for (index, chart) in charts.iter().enumerate() {
        let _ = write!(
            body,
            r##"<g transform="translate({} 0)">{}</g>"##,
            px(WIDTH * index as f64),
            chart.body()
        );
    }
    svg_root(WIDTH * charts.len().max(1) as f64, HEIGHT, title, &body)
}

/// Turns an `<svg>` element into a standalone SVG file.
pub fn document(svg: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{svg}\n")
}

fn svg_root(width: f64, height: f64, title: &str, body: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11" role="img"><title>{}</title>{body}</svg>"##,
        escape(title),
        w = px(width),
        h = px(height)
    )
}

#[cfg(test)]
mod tests;
