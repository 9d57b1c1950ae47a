//! Compiles src/c/trampolines.c: the C-variadic bodies of execl, execlp and execle, which
//! stable Rust cannot define (Rust exports the symbols and jumps to them).

fn main() {
    println!("cargo:rerun-if-changed=src/c/trampolines.c");
    cc::Build::new()
        .file("src/c/trampolines.c")
        .flag("-fvisibility=hidden")
        .warnings(true)
        .extra_warnings(true)
        .compile("capsule_trampolines");
}
