//! Records the target folder this crate is built into: the Python plugin
//! (`librl_gym_python.so`, crate rl-gym-python) is built there too, and a
//! binary of this workspace finds it there without being told.

fn main() {
    let out = std::env::var("OUT_DIR").unwrap_or_default();
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let profile_dir = std::path::Path::new(&out)
        .ancestors()
        .nth(3)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=FERRORL_TARGET_PROFILE_DIR={profile_dir}");
}
