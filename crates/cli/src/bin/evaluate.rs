//! `evaluate`: see `evaluate --help`.

fn main() -> std::process::ExitCode {
    rl_cli::evaluate::evaluate_main(&rl_env::Registry::with_builtins())
}
