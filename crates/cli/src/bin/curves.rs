//! `curves`: see `curves --help`.

fn main() -> std::process::ExitCode {
    rl_cli::curves::curves_main()
}
