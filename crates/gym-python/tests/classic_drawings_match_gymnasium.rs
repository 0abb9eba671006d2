//! The built-in classic-control envs draw their frames (for `evaluate
//! --video`) as Gymnasium's `render_mode="rgb_array"` does: the same size
//! and, pixel for pixel, the same picture but for pygame's antialiased
//! edges (MountainCar's track is an antialiased polyline, which we draw
//! solid: there the shapes must cover the same pixels, give or take one). Reference frames come from Gymnasium itself
//! (scripts/gymnasium_frames.py, run by the project's Python).

use std::path::Path;
use std::process::Command;

use rl_env::{Env, Registry};
use serde_json::json;

#[test]
fn classic_control_frames_match_gymnasiums() {
    let cases = [
        ("CartPole-v1", vec![0.0, 0.0, 0.0, 0.0]),
        ("CartPole-v1", vec![-1.3, 0.4, 0.17, -0.5]),
        ("CartPole-v1", vec![2.0, 0.0, -0.2, 0.0]),
        ("Pendulum-v1", vec![0.0, 0.0]),
        ("Pendulum-v1", vec![2.5, 1.0]),
        ("MountainCar-v0", vec![-0.5, 0.0]),
        ("MountainCar-v0", vec![0.3, 0.02]),
        ("MountainCarContinuous-v0", vec![-1.0, 0.01]),
        ("Acrobot-v1", vec![0.0, 0.0, 0.0, 0.0]),
        ("Acrobot-v1", vec![1.2, -0.7, 0.0, 0.0]),
    ];
    let dir = std::env::temp_dir().join(format!("rl-frames-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let request: Vec<_> = cases
        .iter()
        .map(|(id, s)| json!({"id": id, "state": s}))
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gymnasium_frames.py");
    let python = rl_gym::python_executable().expect("the project's Python (scripts/setup)");
    let out = Command::new(python)
        .arg(&script)
        .arg(&dir)
        .arg(serde_json::Value::Array(request).to_string())
        .env("SDL_VIDEODRIVER", "dummy")
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registry = Registry::with_builtins();
    for (i, (id, state)) in cases.iter().enumerate() {
        let want = std::fs::read(dir.join(format!("{i}.rgb"))).expect("reference frame");
        let mut env = registry.make(id).expect("make");
        let mut obs = vec![0.0; env.observation_space().flat_dim()];
        env.reset_into(Some(0), &mut obs).expect("reset");
        env.set_state(state, &mut obs).expect("set_state");
        let frame = env.render_rgb().expect("render").expect("a frame");
        assert_eq!(frame.rgb.len(), want.len(), "{id} {state:?}: frame size");
        let pixels = want.len() / 3;
        let differing = frame
            .rgb
            .chunks(3)
            .zip(want.chunks(3))
            .filter(|(a, b)| a != b)
            .count();
        // Antialiased edges only: a wrong pose or colour moves thousands.
        let drawn = want.chunks(3).filter(|p| *p != [255, 255, 255]).count();
        if id.starts_with("MountainCar") {
            let misplaced = ink_without_ink_nearby(&frame.rgb, &want, frame.width)
                + ink_without_ink_nearby(&want, &frame.rgb, frame.width);
            assert!(
                misplaced * 50 <= drawn,
                "{id} {state:?}: {misplaced} pixels drawn in one frame and not within a pixel in the other ({drawn} drawn in Gymnasium's)"
            );
        } else {
            assert!(
                differing * 10 <= drawn.max(1),
                "{id} {state:?}: {differing} of {pixels} pixels differ ({drawn} drawn in Gymnasium's frame)"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pixels that are not white in `a` while `b` is white all around them.
fn ink_without_ink_nearby(a: &[u8], b: &[u8], width: usize) -> usize {
    let height = a.len() / 3 / width;
    let ink = |f: &[u8], x: usize, y: usize| {
        f[3 * (y * width + x)..3 * (y * width + x) + 3] != [255, 255, 255]
    };
    let mut count = 0;
    for y in 0..height {
        for x in 0..width {
            if !ink(a, x, y) {
                continue;
            }
            let near = (y.saturating_sub(1)..=(y + 1).min(height - 1))
                .any(|yy| (x.saturating_sub(1)..=(x + 1).min(width - 1)).any(|xx| ink(b, xx, yy)));
            if !near {
                count += 1;
            }
        }
    }
    count
}
