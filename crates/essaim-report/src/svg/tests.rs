//! Unit tests of the SVG charts.

use super::*;

fn chart(x_axis: XAxis, points: Vec<(f64, f64)>, kind: SeriesKind) -> Chart {
    Chart {
        title: "t".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        x_axis,
        series: vec![Series {
            name: "s".into(),
            colour: PALETTE[0],
            kind,
            points,
        }],
        markers: Vec::new(),
    }
}

fn texts(svg: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    document
        .descendants()
        .filter(|node| node.has_tag_name("text"))
        .map(|node| node.text().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn labels_are_escaped_and_survive_a_round_trip() {
    let nasty = r##"<script>alert("x") & 'y'</script>"##;
    let mut chart = chart(
        XAxis::Categories(vec![nasty.into(), "w\u{1}2".into()]),
        vec![(0.0, 3.0), (1.0, 4.0)],
        SeriesKind::Bars,
    );
    chart.title = nasty.into();
    chart.series[0].name = nasty.into();
    chart.markers.push(Marker {
        at: MarkerAt::Y(3.5),
        label: nasty.into(),
    });
    let svg = document(&chart.to_svg());
    assert!(!svg.contains("<script>"), "{svg}");
    let texts = texts(&svg);
    assert!(
        texts.iter().filter(|text| *text == nasty).count() >= 3,
        "{texts:?}"
    );
    assert!(texts.iter().any(|text| text == "w\u{fffd}2"), "{texts:?}");
    let row = document(&row_to_svg(nasty, &[chart.clone(), chart]));
    assert!(roxmltree::Document::parse(&row).is_ok(), "{row}");
}

#[test]
fn ticks_cover_odd_ranges() {
    let cases = [
        (0.0, 0.0),
        (1.0, 1.0),
        (1.0, 1e9),
        (0.0, 0.3),
        (-5.0, 7.0),
        (3.0, -3.0),
        (f64::NAN, 2.0),
        (0.0, f64::INFINITY),
        (1e-6, 2e-6),
    ];
    for (low, high) in cases {
        let ticks = nice_ticks(low, high, 6);
        assert!(ticks.len() >= 2, "{low}..{high}: {ticks:?}");
        assert!(ticks.len() <= 101, "{low}..{high}: {ticks:?}");
        assert!(ticks.iter().all(|tick| tick.is_finite()), "{ticks:?}");
        assert!(ticks.windows(2).all(|pair| pair[0] < pair[1]), "{ticks:?}");
        if low.is_finite() && high.is_finite() {
            assert!(ticks[0] <= low.min(high), "{low}..{high}: {ticks:?}");
            assert!(ticks[ticks.len() - 1] >= low.max(high), "{ticks:?}");
        }
    }
    assert_eq!(nice_ticks(0.0, 0.0, 6), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    assert_eq!(
        nice_ticks(1.0, 1.0, 6)[0],
        0.0,
        "one positive value starts at 0"
    );
    let big = nice_ticks(1.0, 1e9, 6);
    assert_eq!(big.first(), Some(&0.0));
    assert_eq!(big.last(), Some(&1e9));
    let labels: Vec<String> = big.iter().map(|tick| format_number(*tick)).collect();
    assert_eq!(labels, ["0", "200M", "400M", "600M", "800M", "1G"]);
    let small: Vec<String> = nice_ticks(0.0, 0.3, 6)
        .iter()
        .map(|tick| format_number(*tick))
        .collect();
    assert_eq!(small, ["0", "0.05", "0.1", "0.15", "0.2", "0.25", "0.3"]);
}

#[test]
fn numbers_format_compactly() {
    assert_eq!(format_number(0.0), "0");
    assert_eq!(format_number(-0.0), "0");
    assert_eq!(format_number(1234.0), "1234");
    assert_eq!(format_number(15_000.0), "15k");
    assert_eq!(format_number(2.5e9), "2.5G");
    assert_eq!(format_number(0.125), "0.125");
    assert_eq!(format_number(f64::NAN), "–");
}

#[test]
fn empty_and_flat_charts_still_draw_axes() {
    for (x_axis, points) in [
        (XAxis::Linear { bar_width: 1.0 }, Vec::new()),
        (XAxis::Categories(Vec::new()), Vec::new()),
        (XAxis::Linear { bar_width: 0.0 }, vec![(5.0, 0.0)]),
        (XAxis::Categories(vec!["only".into()]), vec![(0.0, 0.0)]),
    ] {
        for kind in [SeriesKind::Bars, SeriesKind::Line] {
            let svg = chart(x_axis.clone(), points.clone(), kind).to_svg();
            let texts = texts(&svg);
            assert!(
                texts.iter().any(|text| text == "0"),
                "a zero tick: {texts:?}"
            );
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }
    let empty = chart(
        XAxis::Linear { bar_width: 1.0 },
        Vec::new(),
        SeriesKind::Line,
    );
    assert!(texts(&empty.to_svg()).iter().any(|t| t == "no data yet"));
}

#[test]
fn bars_of_several_series_share_a_slot_without_overlap() {
    let mut chart = chart(
        XAxis::Categories(vec!["a".into()]),
        vec![(0.0, 2.0)],
        SeriesKind::Bars,
    );
    chart.series.push(Series {
        name: "t".into(),
        colour: PALETTE[1],
        kind: SeriesKind::Bars,
        points: vec![(0.0, 1.0)],
    });
    let svg = chart.to_svg();
    let document = roxmltree::Document::parse(&svg).expect("well-formed");
    let bars: Vec<(f64, f64)> = document
        .descendants()
        .filter(|node| node.has_tag_name("rect") && node.first_child().is_some())
        .map(|node| {
            let x: f64 = node.attribute("x").and_then(|v| v.parse().ok()).unwrap();
            let width: f64 = node
                .attribute("width")
                .and_then(|v| v.parse().ok())
                .unwrap();
            (x, x + width)
        })
        .collect();
    assert_eq!(bars.len(), 2, "{svg}");
    assert!(bars[0].1 <= bars[1].0 + 0.1, "{bars:?}");
}
