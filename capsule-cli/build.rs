//! Links the static unwinder (../capsule-shim/static_unwinder.rs): one shared library fewer
//! to load on `capsule run`'s start-up path.

#[path = "../capsule-shim/static_unwinder.rs"]
mod static_unwinder;

fn main() {
    println!("cargo:rerun-if-changed=../capsule-shim/static_unwinder.rs");
    static_unwinder::link();
}
