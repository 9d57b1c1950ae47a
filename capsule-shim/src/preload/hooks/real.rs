//! The libc functions hooks must call for real (those that are more than one syscall: FILE
//! and DIR streams, dlopen, realpath, posix_spawn). Resolved with `dlsym(RTLD_NEXT)` on first
//! use and cached; raw syscalls cover everything else (see `sys`).

use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicPtr, Ordering};

/// One lazily resolved symbol.
pub struct Real {
    name: &'static CStr,
    ptr: AtomicPtr<c_void>,
}

impl Real {
    /// Not resolved yet.
    pub const fn new(name: &'static CStr) -> Self {
        Real { name, ptr: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// The next definition after ours, or null if there is none.
    pub fn get(&self) -> *mut c_void {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; benign races store the same
        // value. A call-out: whatever dlsym calls passes through our hooks.
        let p = crate::preload::guard::call_out(|| unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) });
        self.ptr.store(p, Ordering::Release);
        p
    }
}

/// Declare typed accessors for real functions.
macro_rules! reals {
    ($($fn_name:ident: $sym:literal => fn($($arg:ty),*) -> $ret:ty;)*) => {
        $(
            /// The real function, or `None` if libc lacks it.
            pub fn $fn_name() -> Option<unsafe extern "C" fn($($arg),*) -> $ret> {
                static R: Real = Real::new($sym);
                let p = R.get();
                if p.is_null() {
                    return None;
                }
                // SAFETY: the symbol named `$sym` in libc has exactly this C signature.
                Some(unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) -> $ret>(p) })
            }
        )*
    };
}

use core::ffi::{c_char, c_int};

reals! {
    fopen: c"fopen" => fn(*const c_char, *const c_char) -> *mut libc::FILE;
    fopen64: c"fopen64" => fn(*const c_char, *const c_char) -> *mut libc::FILE;
    freopen: c"freopen" => fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
    freopen64: c"freopen64" => fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
    fdopen: c"fdopen" => fn(c_int, *const c_char) -> *mut libc::FILE;
    opendir: c"opendir" => fn(*const c_char) -> *mut libc::DIR;
    fdopendir: c"fdopendir" => fn(c_int) -> *mut libc::DIR;
    readdir: c"readdir" => fn(*mut libc::DIR) -> *mut libc::dirent;
    readdir64: c"readdir64" => fn(*mut libc::DIR) -> *mut libc::dirent64;
    closedir: c"closedir" => fn(*mut libc::DIR) -> c_int;
    rewinddir: c"rewinddir" => fn(*mut libc::DIR) -> ();
    dirfd: c"dirfd" => fn(*mut libc::DIR) -> c_int;
    dlopen: c"dlopen" => fn(*const c_char, c_int) -> *mut c_void;
    getifaddrs: c"getifaddrs" => fn(*mut *mut libc::ifaddrs) -> c_int;
    realpath: c"realpath" => fn(*const c_char, *mut c_char) -> *mut c_char;
    getcwd: c"getcwd" => fn(*mut c_char, usize) -> *mut c_char;
    gethostid: c"gethostid" => fn() -> core::ffi::c_long;
    glob: c"glob" => fn(*const c_char, c_int, Option<unsafe extern "C" fn(*const c_char, c_int) -> c_int>, *mut c_void) -> c_int;
    glob64: c"glob64" => fn(*const c_char, c_int, Option<unsafe extern "C" fn(*const c_char, c_int) -> c_int>, *mut c_void) -> c_int;
    get_current_dir_name: c"get_current_dir_name" => fn() -> *mut c_char;
    posix_spawn: c"posix_spawn" => fn(*mut libc::pid_t, *const c_char, *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t, *const *mut c_char, *const *mut c_char) -> c_int;
    posix_spawnp: c"posix_spawnp" => fn(*mut libc::pid_t, *const c_char, *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t, *const *mut c_char, *const *mut c_char) -> c_int;
}
