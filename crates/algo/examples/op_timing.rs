#![allow(clippy::unwrap_used)]
use std::time::Instant;
use tch::{Device, Kind, Tensor};
fn time(name: &str, n: usize, mut f: impl FnMut()) {
    for _ in 0..20 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{name}: {:.1} us",
        t.elapsed().as_secs_f64() / n as f64 * 1e6
    );
}
fn main() {
    tch::set_num_threads(1);
    let x = Tensor::randn([256, 64], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([64], (Kind::Float, Device::Cpu));
    time("linear 256x64x64", 2000, || {
        let _ = x.linear(&w, Some(&b));
    });
    time("matmul 256x64x64", 2000, || {
        let _ = x.matmul(&w);
    });
    time("tanh 256x64", 2000, || {
        let _ = x.tanh();
    });
    time("sigmoid 256x64", 2000, || {
        let _ = x.sigmoid();
    });
    time("2*sigmoid(2x)-1", 2000, || {
        let _ = (&x * 2.0).sigmoid() * 2.0 - 1.0;
    });
    time("exp 256x64", 2000, || {
        let _ = x.exp();
    });
    time("relu 256x64", 2000, || {
        let _ = x.relu();
    });
    let y = x.tanh();
    time("tanh_backward", 2000, || {
        let _ = Tensor::tanh_backward(&x, &y);
    });
    time("add scalar", 2000, || {
        let _ = &x + 1.0;
    });
    let s = Tensor::randn([4], (Kind::Float, Device::Cpu));
    time("add scalar tiny", 2000, || {
        let _ = &s + 1.0;
    });
    let big = Tensor::randn([8900], (Kind::Float, Device::Cpu));
    time("narrow+view", 2000, || {
        let _ = big.narrow(0, 0, 4096).view([64, 64]);
    });
}
