fn main() {
    rl_torch_build::link_libtorch();
}
