//! Links the static unwinder (../capsule-shim/static_unwinder.rs): one shared library fewer
//! to load on `capsule run`'s start-up path, and asks link-gcc (the workspace's linker driver, set
//! in .cargo/config.toml) to link `capsule-cli` as a static PIE and the `capsule` front end as a
//! static executable with its own entry point (src/front/main.rs says why).

#[path = "../capsule-shim/static_unwinder.rs"]
mod static_unwinder;

fn main() {
    println!("cargo:rerun-if-changed=../capsule-shim/static_unwinder.rs");
    static_unwinder::link();
    println!("cargo:rerun-if-changed=link-gcc");
    println!("cargo:rustc-env=CAPSULE_STATIC_BIN=capsule_cli");
    println!("cargo:rustc-env=CAPSULE_BARE_BIN=capsule");
    println!("cargo:rustc-link-arg-bin=capsule=-nostartfiles");
}
