//! RGB frames, and the drawings of the classic-control envs, made the way
//! Gymnasium 1.4's `render_mode="rgb_array"` makes them (same sizes,
//! scales, shapes and colours; pygame's coordinates with y up, flipped at
//! the end), without pygame's antialiased edges and without Pendulum's
//! torque arrow image.

use std::f64::consts::PI;

/// One RGB frame, `height x width x 3` bytes, row-major from the top.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];

/// A canvas with pygame's y-up coordinates.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            rgb: WHITE.repeat(width * height),
        }
    }

    fn put(&mut self, x: usize, y: usize, color: Rgb) {
        let i = 3 * (y * self.width + x);
        self.rgb[i..i + 3].copy_from_slice(&color);
    }

    fn hline(&mut self, x0: i64, x1: i64, y: i64, color: Rgb) {
        if y < 0 || y >= self.height as i64 {
            return;
        }
        let (a, b) = (x0.min(x1).max(0), x0.max(x1).min(self.width as i64 - 1));
        for x in a..=b {
            self.put(x as usize, y as usize, color);
        }
    }

    /// pygame's `gfxdraw.filled_polygon` (SDL_gfx's `filledPolygon`):
    /// vertices truncated to integers, scanlines through them, spans
    /// rounded in 16.16 fixed point, both ends included.
    fn polygon(&mut self, points: &[(f64, f64)], color: Rgb) {
        if points.len() < 3 {
            return;
        }
        let v: Vec<(i64, i64)> = points.iter().map(|p| (p.0 as i64, p.1 as i64)).collect();
        let miny = v.iter().map(|p| p.1).min().unwrap_or(0);
        let maxy = v.iter().map(|p| p.1).max().unwrap_or(0);
        let mut ints = Vec::with_capacity(v.len());
        for y in miny..=maxy {
            ints.clear();
            for i in 0..v.len() {
                let (a, b) = (v[if i == 0 { v.len() - 1 } else { i - 1 }], v[i]);
                let ((x1, y1), (x2, y2)) = if a.1 < b.1 {
                    (a, b)
                } else if a.1 > b.1 {
                    (b, a)
                } else {
                    continue;
                };
                if (y >= y1 && y < y2) || (y == maxy && y > y1 && y <= y2) {
                    ints.push(((65536 * (y - y1)) / (y2 - y1)) * (x2 - x1) + 65536 * x1);
                }
            }
            ints.sort_unstable();
            for pair in ints.chunks(2) {
                if let [a, b] = pair {
                    let xa = a + 1;
                    let xa = (xa >> 16) + ((xa & 32768) >> 15);
                    let xb = b - 1;
                    let xb = (xb >> 16) + ((xb & 32768) >> 15);
                    self.hline(xa, xb, y, color);
                }
            }
        }
    }

    /// pygame's `gfxdraw.filled_circle` (SDL_gfx's `filledCircle`).
    fn circle(&mut self, (x, y): (f64, f64), r: f64, color: Rgb) {
        let (x, y, r) = (x as i64, y as i64, r as i64);
        if r <= 0 {
            self.hline(x, x, y, color);
            return;
        }
        let (mut cx, mut cy, mut ocx, mut ocy) = (0i64, r, i64::MAX, i64::MAX);
        let (mut df, mut d_e, mut d_se) = (1 - r, 3i64, 5 - 2 * r);
        loop {
            if ocy != cy {
                if cy > 0 {
                    self.hline(x - cx, x + cx, y + cy, color);
                    self.hline(x - cx, x + cx, y - cy, color);
                } else {
                    self.hline(x - cx, x + cx, y, color);
                }
                ocy = cy;
            }
            if ocx != cx {
                if cx != cy {
                    if cx > 0 {
                        self.hline(x - cy, x + cy, y - cx, color);
                        self.hline(x - cy, x + cy, y + cx, color);
                    } else {
                        self.hline(x - cy, x + cy, y, color);
                    }
                }
                ocx = cx;
            }
            if df < 0 {
                df += d_e;
                d_e += 2;
                d_se += 2;
            } else {
                df += d_se;
                d_e += 2;
                d_se += 4;
                cy -= 1;
            }
            cx += 1;
            if cx > cy {
                break;
            }
        }
    }

    /// A line one pixel wide (Bresenham, integer end points).
    fn line(&mut self, a: (f64, f64), b: (f64, f64), color: Rgb) {
        let (mut x0, mut y0, x1, y1) = (a.0 as i64, a.1 as i64, b.0 as i64, b.1 as i64);
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.hline(x0, x0, y0, color);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// pygame's `transform.flip(surf, False, True)`: rows top-down.
    fn into_frame(self) -> Frame {
        let row = 3 * self.width;
        let mut rgb = Vec::with_capacity(self.rgb.len());
        for r in self.rgb.chunks(row).rev() {
            rgb.extend_from_slice(r);
        }
        Frame {
            width: self.width,
            height: self.height,
            rgb,
        }
    }
}

/// `pygame.math.Vector2(p).rotate_rad(angle)` then a translation.
fn placed(points: &[(f64, f64)], angle: f64, at: (f64, f64)) -> Vec<(f64, f64)> {
    let (s, c) = angle.sin_cos();
    points
        .iter()
        .map(|(x, y)| (x * c - y * s + at.0, x * s + y * c + at.1))
        .collect()
}

fn rect(l: f64, r: f64, t: f64, b: f64) -> [(f64, f64); 4] {
    [(l, b), (l, t), (r, t), (r, b)]
}

/// CartPole-v1: state `[x, x_dot, theta, theta_dot]`.
pub(crate) fn cartpole(state: &[f64; 4], x_threshold: f64, length: f64) -> Frame {
    let (w, h) = (600, 400);
    let mut c = Canvas::new(w, h);
    let scale = w as f64 / (x_threshold * 2.0);
    let (pole_width, pole_len) = (10.0, scale * (2.0 * length));
    let (cart_width, cart_height) = (50.0, 30.0);
    let cart_x = state[0] * scale + w as f64 / 2.0;
    let cart_y = 100.0;
    let axle = cart_height / 4.0;
    let cart = rect(
        -cart_width / 2.0,
        cart_width / 2.0,
        cart_height / 2.0,
        -cart_height / 2.0,
    );
    c.polygon(&placed(&cart, 0.0, (cart_x, cart_y)), BLACK);
    let pole = rect(
        -pole_width / 2.0,
        pole_width / 2.0,
        pole_len - pole_width / 2.0,
        -pole_width / 2.0,
    );
    c.polygon(
        &placed(&pole, -state[2], (cart_x, cart_y + axle)),
        [202, 152, 101],
    );
    c.circle((cart_x, cart_y + axle), pole_width / 2.0, [129, 132, 203]);
    c.line((0.0, cart_y), (w as f64, cart_y), BLACK);
    c.into_frame()
}

/// Pendulum-v1: state `[theta, theta_dot]`.
pub(crate) fn pendulum(state: &[f64; 2]) -> Frame {
    let size = 500;
    let mut c = Canvas::new(size, size);
    let bound = 2.2;
    let scale = size as f64 / (bound * 2.0);
    let offset = size as f64 / 2.0;
    let (rod_length, rod_width) = (scale, 0.2 * scale);
    let red = [204, 77, 77];
    let rod = rect(0.0, rod_length, rod_width / 2.0, -rod_width / 2.0);
    let angle = state[0] + PI / 2.0;
    c.polygon(&placed(&rod, angle, (offset, offset)), red);
    c.circle((offset, offset), rod_width / 2.0, red);
    let end = placed(&[(rod_length, 0.0)], angle, (offset, offset))[0];
    c.circle(end, rod_width / 2.0, red);
    c.circle((offset, offset), 0.05 * scale, BLACK);
    c.into_frame()
}

/// MountainCar-v0 and MountainCarContinuous-v0: state `[position, velocity]`.
pub(crate) fn mountain_car(
    state: &[f64; 2],
    min_position: f64,
    max_position: f64,
    goal: f64,
) -> Frame {
    let (w, h) = (600, 400);
    let mut c = Canvas::new(w, h);
    let scale = w as f64 / (max_position - min_position);
    let height = |x: f64| (3.0 * x).sin() * 0.45 + 0.55;
    let track: Vec<(f64, f64)> = (0..100)
        .map(|i| {
            let x = min_position + (max_position - min_position) * i as f64 / 99.0;
            ((x - min_position) * scale, height(x) * scale)
        })
        .collect();
    for pair in track.windows(2) {
        c.line(pair[0], pair[1], BLACK);
    }
    let (car_width, car_height, clearance) = (40.0, 20.0, 10.0);
    let pos = state[0];
    let angle = (3.0 * pos).cos();
    let at = (
        (pos - min_position) * scale,
        clearance + height(pos) * scale,
    );
    let car = rect(-car_width / 2.0, car_width / 2.0, car_height, 0.0);
    c.polygon(&placed(&car, angle, at), BLACK);
    for wx in [car_width / 4.0, -car_width / 4.0] {
        let wheel = placed(&[(wx, 0.0)], angle, at)[0];
        c.circle(wheel, car_height / 2.5, [128, 128, 128]);
    }
    let flag_x = (goal - min_position) * scale;
    let flag_y1 = height(goal) * scale;
    let flag_y2 = flag_y1 + 50.0;
    c.line((flag_x, flag_y1), (flag_x, flag_y2), BLACK);
    c.polygon(
        &[
            (flag_x, flag_y2),
            (flag_x, flag_y2 - 10.0),
            (flag_x + 25.0, flag_y2 - 5.0),
        ],
        [204, 204, 0],
    );
    c.into_frame()
}

/// Acrobot-v1: state `[theta1, theta2, dtheta1, dtheta2]`.
pub(crate) fn acrobot(state: &[f64; 4], l1: f64, l2: f64) -> Frame {
    let size = 500;
    let mut c = Canvas::new(size, size);
    let bound = l1 + l2 + 0.2;
    let scale = size as f64 / (bound * 2.0);
    let offset = size as f64 / 2.0;
    let (s0, s1) = (state[0], state[1]);
    let p1 = (-l1 * s0.cos() * scale, l1 * s0.sin() * scale);
    let p2 = (
        p1.0 - l2 * (s0 + s1).cos() * scale,
        p1.1 + l2 * (s0 + s1).sin() * scale,
    );
    // Gymnasium swaps the coordinates: xys = [[0, 0], p1, p2][:, ::-1].
    let joints = [(0.0, 0.0), (p1.1, p1.0), (p2.1, p2.0)];
    let thetas = [s0 - PI / 2.0, s0 + s1 - PI / 2.0];
    let lengths = [l1 * scale, l2 * scale];
    c.line(
        (-2.2 * scale + offset, scale + offset),
        (2.2 * scale + offset, scale + offset),
        BLACK,
    );
    for k in 0..2 {
        let at = (joints[k].0 + offset, joints[k].1 + offset);
        let link = rect(0.0, lengths[k], 0.1 * scale, -0.1 * scale);
        c.polygon(&placed(&link, thetas[k], at), [0, 204, 204]);
        c.circle(at, 0.1 * scale, [204, 204, 0]);
    }
    c.into_frame()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(f: &Frame, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * f.width + x);
        [f.rgb[i], f.rgb[i + 1], f.rgb[i + 2]]
    }

    #[test]
    fn cartpole_draws_the_cart_the_pole_and_the_track_where_gymnasium_does() {
        let f = cartpole(&[0.0, 0.0, 0.0, 0.0], 2.4, 0.5);
        assert_eq!((f.width, f.height, f.rgb.len()), (600, 400, 600 * 400 * 3));
        // Cart centred at x = 300, y = 100 from the bottom (row 300 from the top).
        assert_eq!(pixel(&f, 300, 300), BLACK);
        // The upright pole above the axle, in its colour.
        assert_eq!(pixel(&f, 300, 250), [202, 152, 101]);
        // Sky.
        assert_eq!(pixel(&f, 50, 50), WHITE);
        // The track line at y = 100 across the frame.
        assert_eq!(pixel(&f, 10, 299), BLACK);
    }

    #[test]
    fn a_tilted_pole_leans_the_way_the_state_says() {
        // Positive theta leans the pole to the right, as in Gymnasium.
        let f = cartpole(&[0.0, 0.0, 0.3, 0.0], 2.4, 0.5);
        let right = pixel(&f, 300 + 30, 200);
        let left = pixel(&f, 300 - 30, 200);
        assert_eq!((right, left), ([202, 152, 101], WHITE));
    }

    #[test]
    fn every_drawing_has_gymnasiums_size() {
        assert_eq!(
            (pendulum(&[1.0, 0.0]).width, pendulum(&[1.0, 0.0]).height),
            (500, 500)
        );
        let m = mountain_car(&[-0.5, 0.0], -1.2, 0.6, 0.5);
        assert_eq!((m.width, m.height), (600, 400));
        let a = acrobot(&[0.3, 0.2, 0.0, 0.0], 1.0, 1.0);
        assert_eq!((a.width, a.height), (500, 500));
        // Something is drawn in each.
        for f in [pendulum(&[1.0, 0.0]), m, a] {
            assert!(f.rgb.chunks(3).any(|p| p != WHITE));
        }
    }
}
