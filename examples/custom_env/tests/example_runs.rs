//! The example is documentation that must keep working: run the real binary.

use std::process::Command;

#[test]
fn custom_env_example_registers_and_steps_its_env() {
    let output = Command::new(env!("CARGO_BIN_EXE_custom-env-example"))
        .output()
        .expect("the example binary starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Corridor-v0:") && stdout.contains("episodes over 16 envs"),
        "{stdout}"
    );
    assert!(stdout.contains("CartPole-v1, Corridor-v0"), "{stdout}");
}
