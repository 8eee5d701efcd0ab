// Embed libtorch's library folder as an rpath so that `oddity`, its tests and
// benches run without LD_LIBRARY_PATH (torch-sys exports the folder to direct
// dependents as DEP_TCH_LIBTORCH_LIB).
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
