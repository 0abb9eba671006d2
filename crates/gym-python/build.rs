//! The plugin links libpython; its folder goes into the plugin's run path
//! so that the interpreter the plugin was built against is the one loaded
//! (a system may have another libpython of the same name on its default
//! search path).

fn main() {
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
