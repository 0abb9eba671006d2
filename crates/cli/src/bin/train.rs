//! `train`: see `train --help`.

fn main() -> std::process::ExitCode {
    rl_cli::train::train_main(&rl_env::Registry::with_builtins())
}
