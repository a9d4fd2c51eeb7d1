//! A loss-curve PNG drawn directly into an RGB buffer and encoded with the
//! `png` crate: axes with numeric ticks, one colour per method, training loss
//! thin, validation loss thick, and a legend. Text uses a built-in 5×7 bitmap
//! font, so no font files or system libraries are needed.

use crate::error::{Result, TrainError};
use std::path::Path;

/// One curve: `(step, loss)` points.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: [u8; 3],
    pub points: Vec<(f64, f64)>,
    /// Thick line with point markers (validation) or thin (training).
    pub thick: bool,
}

/// Colour of the `index`-th method, distinguishable in print and on screen.
pub fn palette(index: usize) -> [u8; 3] {
    const COLORS: [[u8; 3]; 6] = [
        [214, 39, 40],
        [31, 119, 180],
        [44, 160, 44],
        [255, 127, 14],
        [148, 103, 189],
        [110, 110, 110],
    ];
    COLORS[index % COLORS.len()]
}

/// A lighter tint of `c` (training curves under the validation ones).
pub fn tint(c: [u8; 3]) -> [u8; 3] {
    c.map(|v| (v as u16 + (255 - v as u16) * 11 / 20) as u8)
}

const WIDTH: usize = 1000;
const HEIGHT: usize = 620;
const LEFT: usize = 90;
const RIGHT: usize = 300;
const TOP: usize = 50;
const BOTTOM: usize = 70;
const SCALE: usize = 2;

struct Canvas {
    pixels: Vec<u8>,
}

/// Rows of the 5×7 glyphs (bit 4 = leftmost column).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [28, 18, 17, 17, 17, 18, 28],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 17, 10, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '/' => [0, 1, 2, 4, 8, 16, 0],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        '_' => [0, 0, 0, 0, 0, 0, 31],
        '=' => [0, 0, 31, 0, 31, 0, 0],
        _ => [0; 7],
    }
}

impl Canvas {
    fn new() -> Self {
        Canvas {
            pixels: vec![255; WIDTH * HEIGHT * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let i = (y as usize * WIDTH + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn dot(&mut self, x: i64, y: i64, radius: i64, c: [u8; 3]) {
        for dy in -radius..=radius {
            for dx in -radius..=radius {
                self.set(x + dx, y + dy, c);
            }
        }
    }

    /// Bresenham line, `radius` pixels either side.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), radius: i64, c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.dot(x, y, radius, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            let ox = x + (k * 6 * SCALE) as i64;
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (16 >> col) != 0 {
                        for sy in 0..SCALE {
                            for sx in 0..SCALE {
                                self.set(
                                    ox + (col * SCALE + sx) as i64,
                                    y + (r * SCALE + sy) as i64,
                                    c,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

fn text_width(s: &str) -> i64 {
    (s.chars().count() * 6 * SCALE) as i64
}

/// A short tick label: up to 4 significant digits.
fn tick_label(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws `series` as a loss-vs-step chart with `title` and writes a PNG.
pub fn plot_losses(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let points = series.iter().flat_map(|s| s.points.iter());
    let finite: Vec<(f64, f64)> = points
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .copied()
        .collect();
    if finite.is_empty() {
        return Err(TrainError::Data("no finite points to plot".into()));
    }
    let x_max = finite.iter().map(|p| p.0).fold(f64::MIN, f64::max).max(1.0);
    let y_lo = finite.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let y_hi = finite.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let pad = ((y_hi - y_lo) * 0.05).max(1e-3);
    let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
    let (pw, ph) = (
        (WIDTH - LEFT - RIGHT) as f64,
        (HEIGHT - TOP - BOTTOM) as f64,
    );
    let to_px = |(x, y): (f64, f64)| -> (i64, i64) {
        (
            LEFT as i64 + (x / x_max * pw).round() as i64,
            TOP as i64 + ((y_hi - y) / (y_hi - y_lo) * ph).round() as i64,
        )
    };
    let mut canvas = Canvas::new();
    let (black, grid) = ([0, 0, 0], [225, 225, 225]);
    for i in 0..=5 {
        let fy = y_lo + (y_hi - y_lo) * i as f64 / 5.0;
        let (_, py) = to_px((0.0, fy));
        canvas.line((LEFT as i64, py), ((WIDTH - RIGHT) as i64, py), 0, grid);
        let label = tick_label(fy);
        canvas.text(LEFT as i64 - 8 - text_width(&label), py - 7, &label, black);
        let fx = x_max * i as f64 / 5.0;
        let (px, _) = to_px((fx, y_lo));
        canvas.line((px, TOP as i64), (px, (HEIGHT - BOTTOM) as i64), 0, grid);
        let label = tick_label(fx.round());
        canvas.text(
            px - text_width(&label) / 2,
            (HEIGHT - BOTTOM) as i64 + 10,
            &label,
            black,
        );
    }
    let (x0, y0, x1, y1) = (
        LEFT as i64,
        TOP as i64,
        (WIDTH - RIGHT) as i64,
        (HEIGHT - BOTTOM) as i64,
    );
    canvas.line((x0, y1), (x1, y1), 0, black);
    canvas.line((x0, y0), (x0, y1), 0, black);
    canvas.text(x0, 16, title, black);
    canvas.text(
        (x0 + x1) / 2 - text_width("STEP") / 2,
        y1 + 40,
        "STEP",
        black,
    );
    canvas.text(8, y0 - 30, "LOSS", black);

    // Thin curves first so validation lines stay on top.
    let mut order: Vec<&Series> = series.iter().collect();
    order.sort_by_key(|s| s.thick);
    for s in order {
        let pts: Vec<(i64, i64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .map(to_px)
            .collect();
        let radius = if s.thick { 1 } else { 0 };
        for w in pts.windows(2) {
            canvas.line(w[0], w[1], radius, s.color);
        }
        if s.thick {
            for &p in &pts {
                canvas.dot(p.0, p.1, 3, s.color);
            }
        }
    }
    let lx = (WIDTH - RIGHT + 20) as i64;
    for (i, s) in series.iter().enumerate() {
        let ly = TOP as i64 + 10 + i as i64 * 26;
        let radius = if s.thick { 2 } else { 0 };
        canvas.line((lx, ly + 7), (lx + 30, ly + 7), radius, s.color);
        canvas.text(lx + 40, ly, &s.label, black);
    }
    write_png(path, &canvas.pixels)
}

fn write_png(path: &Path, rgb: &[u8]) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, WIDTH as u32, HEIGHT as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| TrainError::Data(format!("png encoding failed: {e}")))?;
        writer
            .write_image_data(rgb)
            .map_err(|e| TrainError::Data(format!("png encoding failed: {e}")))?;
    }
    apex_model::write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_is_a_decodable_png_with_the_series_colours() {
        let dir = std::env::temp_dir().join(format!("apex-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loss.png");
        let series = vec![
            Series {
                label: "apex train".into(),
                color: tint(palette(0)),
                points: vec![(0.0, 3.0), (10.0, 2.0), (20.0, 1.5)],
                thick: false,
            },
            Series {
                label: "apex val".into(),
                color: palette(0),
                points: vec![(0.0, 3.1), (20.0, 1.7)],
                thick: true,
            },
        ];
        plot_losses(&path, "LOSS", &series).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH as u32, HEIGHT as u32));
        let has = |c: [u8; 3]| buf.chunks(3).any(|p| p == c);
        assert!(has(palette(0)) && has(tint(palette(0))));
        assert!(plot_losses(&path, "LOSS", &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
