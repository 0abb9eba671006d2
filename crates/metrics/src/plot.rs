//! The learning-curve PNG (`curve.png` in a run directory): evaluation mean
//! return with its min-max band against env steps, like ElegantRL's
//! learning curve. Drawn pixel by pixel with the public-domain 8x8 bitmap
//! font of `font8x8`, so labels are readable on a machine without any font
//! installed.

use std::io;

const WIDTH: usize = 960;
const HEIGHT: usize = 540;
const LEFT: usize = 120;
const RIGHT: usize = 40;
const TOP: usize = 70;
const BOTTOM: usize = 80;

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [30, 30, 30];
const GRID: Rgb = [225, 225, 225];
const LINE: Rgb = [31, 119, 180];
const BAND: Rgb = [190, 215, 238];

/// The largest magnitude a drawn value may have: beyond it (or below 0 for
/// env steps), points are left out and the picture says how many, so that
/// pixel arithmetic stays exact and bounded whatever a CSV holds.
pub const DRAWABLE: f64 = 1e15;

/// Whether a point `(x, y)` of a learning curve can be drawn (see
/// [`DRAWABLE`]).
pub fn drawable(x: f64, y: f64) -> bool {
    (0.0..=DRAWABLE).contains(&x) && y.is_finite() && y.abs() <= DRAWABLE
}

/// One curve: at each `x`, the mean and the min and max of an evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    pub x: Vec<f64>,
    pub mean: Vec<f64>,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Canvas {
            pixels: WHITE.repeat(WIDTH * HEIGHT),
        }
    }

    fn set(&mut self, x: i64, y: i64, color: Rgb) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let at = (y as usize * WIDTH + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&color);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, color);
            }
        }
    }

    /// A line `width` pixels thick.
    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), width: i64, color: Rgb) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as i64;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            let (x, y) = (x.round() as i64, y.round() as i64);
            self.rect(
                x - width / 2,
                y - width / 2,
                x + (width - 1) / 2,
                y + (width - 1) / 2,
                color,
            );
        }
    }

    /// Text at `scale` times the 8x8 font, top-left at `(x, y)`.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: Rgb) {
        for (i, c) in text.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY
                .get(c as usize)
                .copied()
                .unwrap_or(font8x8::legacy::BASIC_LEGACY[b'?' as usize]);
            let left = x + i as i64 * 8 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        let (px, py) = (left + col * scale, y + row as i64 * scale);
                        self.rect(px, py, px + scale - 1, py + scale - 1, color);
                    }
                }
            }
        }
    }

    fn text_width(text: &str, scale: i64) -> i64 {
        text.chars().count() as i64 * 8 * scale
    }

    fn png(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, WIDTH as u32, HEIGHT as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        writer
            .write_image_data(&self.pixels)
            .map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
        Ok(out)
    }
}

/// Round tick positions covering `[lo, hi]` (steps of 1, 2 or 5 x 10^k).
fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / target as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A short label: 1.5M, 20k, 0.25, -200.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        trim(format!("{v:.2}"))
    }
}

/// Draws `curve` (x: env steps) as a PNG image titled `title`.
pub fn curve_png(title: &str, curve: &Curve) -> io::Result<Vec<u8>> {
    let mut c = Canvas::new();
    let (px0, px1) = (LEFT as f64, (WIDTH - RIGHT) as f64);
    let (py0, py1) = (TOP as f64, (HEIGHT - BOTTOM) as f64);
    let points: Vec<usize> = (0..curve.x.len())
        .filter(|&i| {
            [curve.mean[i], curve.min[i], curve.max[i]]
                .iter()
                .all(|y| drawable(curve.x[i], *y))
        })
        .collect();
    let skipped = curve.x.len() - points.len();
    let x_max = points.iter().map(|&i| curve.x[i]).fold(1.0, f64::max);
    let (mut y_lo, mut y_hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &i| {
            (lo.min(curve.min[i]), hi.max(curve.max[i]))
        });
    if !y_lo.is_finite() {
        (y_lo, y_hi) = (0.0, 1.0);
    }
    let pad = ((y_hi - y_lo) * 0.06).max(0.5);
    let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
    let sx = |x: f64| px0 + (x / x_max) * (px1 - px0);
    let sy = |y: f64| py1 - (y - y_lo) / (y_hi - y_lo) * (py1 - py0);

    // Grid and tick labels.
    for t in ticks(0.0, x_max, 8) {
        let x = sx(t);
        c.line((x, py0), (x, py1), 1, GRID);
        let label = short_number(t);
        c.text(
            x as i64 - Canvas::text_width(&label, 2) / 2,
            py1 as i64 + 10,
            &label,
            2,
            BLACK,
        );
    }
    for t in ticks(y_lo, y_hi, 6) {
        let y = sy(t);
        c.line((px0, y), (px1, y), 1, GRID);
        let label = short_number(t);
        c.text(
            px0 as i64 - 10 - Canvas::text_width(&label, 2),
            y as i64 - 8,
            &label,
            2,
            BLACK,
        );
    }

    // The min-max band, column by column, then the mean line.
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let (xa, xb) = (sx(curve.x[a]), sx(curve.x[b]));
        let columns = (xb - xa).max(1.0).ceil() as i64;
        for k in 0..=columns {
            let t = k as f64 / columns as f64;
            let lerp = |u: f64, v: f64| u + (v - u) * t;
            let x = (xa + (xb - xa) * t).round() as i64;
            let (lo, hi) = (
                sy(lerp(curve.min[a], curve.min[b])),
                sy(lerp(curve.max[a], curve.max[b])),
            );
            c.rect(x, hi.round() as i64, x, lo.round() as i64, BAND);
        }
    }
    if let [only] = points[..] {
        let x = sx(curve.x[only]).round() as i64;
        c.rect(
            x - 3,
            sy(curve.max[only]) as i64,
            x + 3,
            sy(curve.min[only]) as i64,
            BAND,
        );
    }
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        c.line(
            (sx(curve.x[a]), sy(curve.mean[a])),
            (sx(curve.x[b]), sy(curve.mean[b])),
            3,
            LINE,
        );
    }
    for &i in &points {
        let (x, y) = (
            sx(curve.x[i]).round() as i64,
            sy(curve.mean[i]).round() as i64,
        );
        c.rect(x - 3, y - 3, x + 3, y + 3, LINE);
    }

    // Axes, labels, title, legend.
    c.line((px0, py0), (px0, py1), 2, BLACK);
    c.line((px0, py1), (px1, py1), 2, BLACK);
    let x_label = "env steps";
    c.text(
        ((px0 + px1) / 2.0) as i64 - Canvas::text_width(x_label, 2) / 2,
        HEIGHT as i64 - 36,
        x_label,
        2,
        BLACK,
    );
    c.text(px0 as i64 - 100, py0 as i64 - 28, "return", 2, BLACK);
    let title: String = title.chars().take(52).collect();
    c.text(
        WIDTH as i64 / 2 - Canvas::text_width(&title, 2) / 2,
        16,
        &title,
        2,
        BLACK,
    );
    // The legend sits above the plot, on the right, clear of the curve.
    let ly = py0 as i64 - 28;
    let mean_x = px1 as i64 - Canvas::text_width("eval mean", 2) - 40;
    let band_x = mean_x - Canvas::text_width("eval min-max", 2) - 70;
    c.rect(band_x, ly + 2, band_x + 30, ly + 12, BAND);
    c.text(band_x + 40, ly, "eval min-max", 2, BLACK);
    c.line(
        (mean_x as f64, (ly + 7) as f64),
        ((mean_x + 30) as f64, (ly + 7) as f64),
        3,
        LINE,
    );
    c.text(mean_x + 40, ly, "eval mean", 2, BLACK);
    if skipped > 0 {
        let note = format!("{skipped} points not drawn (beyond +-1e15 or not numbers)");
        c.text(px0 as i64 + 10, py0 as i64 + 10, &note, 1, BLACK);
    }
    if points.is_empty() {
        c.text(
            ((px0 + px1) / 2.0) as i64 - Canvas::text_width("no evaluation yet", 2) / 2,
            ((py0 + py1) / 2.0) as i64,
            "no evaluation yet",
            2,
            BLACK,
        );
    }
    c.png()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 50_000.0, 8), [0.0, 1e4, 2e4, 3e4, 4e4, 5e4]);
        assert_eq!(
            ticks(-210.0, -95.0, 6),
            [-200.0, -180.0, -160.0, -140.0, -120.0, -100.0]
        );
        assert_eq!(short_number(1_500_000.0), "1.5M");
        assert_eq!(short_number(20_480.0), "20.5k");
        assert_eq!(short_number(-200.0), "-200");
        assert_eq!(short_number(0.25), "0.25");
    }

    #[test]
    fn a_curve_is_a_png_of_the_right_size_with_its_line_drawn() {
        let curve = Curve {
            x: vec![2048.0, 4096.0, 6144.0],
            mean: vec![20.0, 180.0, 500.0],
            min: vec![10.0, 90.0, 500.0],
            max: vec![35.0, 300.0, 500.0],
        };
        let png_bytes = curve_png("CartPole-v1  runs/ppo", &curve).unwrap();
        let decoder = png::Decoder::new(&png_bytes[..]);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH as u32, HEIGHT as u32));
        let count = |color: Rgb| buf.chunks_exact(3).filter(|p| *p == color).count();
        assert!(count(LINE) > 500, "the mean line is drawn");
        assert!(count(BAND) > 500, "the band is drawn");
        assert!(count(BLACK) > 2000, "text and axes are drawn");
        // An empty curve still gives an image (saying so).
        assert!(curve_png("empty", &Curve::default()).is_ok());
    }

    #[test]
    fn extreme_values_are_left_out_and_the_picture_is_drawn_at_once() {
        let curve = Curve {
            x: vec![-1e300, 0.0, 1e300, f64::MAX, 10.0, 20.0],
            mean: vec![1.0, -f64::MAX, 5.0, 1.0, 2.0, 3.0],
            min: vec![1.0, -f64::MAX, 5.0, 1.0, 1.0, f64::NAN],
            max: vec![1.0, f64::MAX, 5.0, 1.0, 3.0, 4.0],
        };
        let start = std::time::Instant::now();
        assert!(curve_png("extreme", &curve).is_ok());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(drawable(10.0, 2.0) && !drawable(-1.0, 2.0) && !drawable(1.0, 1e16));
    }
}
