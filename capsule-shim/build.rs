//! Compiles src/c/trampolines.c: the C-variadic bodies of execl, execlp and execle, which
//! stable Rust cannot define (Rust exports the symbols and jumps to them). Links the static
//! unwinder (static_unwinder.rs): the shim is loaded into every program a capsule starts.

#[path = "static_unwinder.rs"]
mod static_unwinder;

fn main() {
    println!("cargo:rerun-if-changed=src/c/trampolines.c");
    println!("cargo:rerun-if-changed=static_unwinder.rs");
    cc::Build::new()
        .file("src/c/trampolines.c")
        .flag("-fvisibility=hidden")
        .warnings(true)
        .extra_warnings(true)
        .compile("capsule_trampolines");
    static_unwinder::link();
}
