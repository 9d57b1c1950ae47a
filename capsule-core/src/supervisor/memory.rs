//! The tracee as the handlers see it: its memory, its working directory and its descriptors.
//! [`Process`] is the real one (`process_vm_readv`/`process_vm_writev`, `/proc/PID/...`); the
//! tests use an in-memory one (HOUSE-STYLE §4, reverie's pattern).
#![allow(unsafe_code)] // process_vm_readv / process_vm_writev

use std::io;

/// The longest path read from a tracee (PATH_MAX, NUL included).
pub const PATH_MAX: usize = 4096;

/// What handlers may ask of a stopped tracee.
pub trait TraceeMemory {
    /// Read up to `buf.len()` bytes at `addr`; may stop short at an unmapped page.
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Write all of `data` at `addr`.
    fn write(&self, addr: u64, data: &[u8]) -> io::Result<()>;
    /// The notification is still pending: what was read is the tracee's current state.
    fn still_valid(&self) -> bool;
    /// The tracee's working directory.
    fn cwd(&self) -> io::Result<Vec<u8>>;
    /// The path of the tracee's descriptor `fd`.
    fn fd_path(&self, fd: i32) -> io::Result<Vec<u8>>;
    /// The target of `/proc/PROC/LINK` as the tracee would read it (`PROC`: `self`,
    /// `thread-self` or a pid, as the tracee spelt it).
    fn proc_link(&self, proc: &[u8], link: &[u8]) -> io::Result<Vec<u8>> {
        let _ = (proc, link);
        Err(io::Error::from_raw_os_error(libc::ENOENT))
    }
}

/// Read a NUL-terminated string at `addr` (without the NUL). ENAMETOOLONG past PATH_MAX,
/// EFAULT for a null or unreadable pointer, as the kernel would say.
pub fn read_path(mem: &impl TraceeMemory, addr: u64) -> Result<Vec<u8>, i32> {
    if addr == 0 {
        return Err(libc::EFAULT);
    }
    let mut out = Vec::with_capacity(256);
    let mut at = addr;
    // Most paths are short: a first read of 256 bytes, then up to a page at a time.
    let mut step = 256;
    while out.len() < PATH_MAX {
        // Never across a page boundary: the following page may not be mapped.
        let page_left = 4096 - usize::try_from(at % 4096).unwrap_or(0);
        let mut chunk = [0u8; 4096];
        let want = page_left.min(PATH_MAX - out.len()).min(step);
        step = 4096;
        let n = mem.read(at, &mut chunk[..want]).map_err(|_| libc::EFAULT)?;
        if n == 0 {
            return Err(libc::EFAULT);
        }
        if let Some(z) = chunk[..n].iter().position(|&c| c == 0) {
            out.extend_from_slice(&chunk[..z]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    Err(libc::ENAMETOOLONG)
}

/// A real tracee: thread `pid`, whose notification `id` is checked with `valid`.
pub struct Process<'a> {
    /// The thread that made the call.
    pub pid: u32,
    /// Whether the notification is still pending.
    pub valid: &'a dyn Fn() -> bool,
}

impl TraceeMemory for Process<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: `local` covers exactly `buf`, writable; the remote side is the tracee's
        // memory, which the kernel checks (EFAULT), never ours.
        let r = unsafe { libc::process_vm_readv(pid_t(self.pid), &raw const local, 1, &raw const remote, 1, 0) };
        usize::try_from(r).map_err(|_| io::Error::last_os_error())
    }

    fn write(&self, addr: u64, data: &[u8]) -> io::Result<()> {
        let local = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: data.len() };
        // SAFETY: `local` covers exactly `data`, which the kernel only reads.
        let r = unsafe { libc::process_vm_writev(pid_t(self.pid), &raw const local, 1, &raw const remote, 1, 0) };
        match usize::try_from(r) {
            Ok(n) if n == data.len() => Ok(()),
            Ok(_) => Err(io::Error::from_raw_os_error(libc::EFAULT)),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    fn still_valid(&self) -> bool {
        (self.valid)()
    }

    fn cwd(&self) -> io::Result<Vec<u8>> {
        link(&format!("/proc/{}/cwd", self.pid))
    }

    fn fd_path(&self, fd: i32) -> io::Result<Vec<u8>> {
        link(&format!("/proc/{}/fd/{fd}", self.pid))
    }

    fn proc_link(&self, proc: &[u8], name: &[u8]) -> io::Result<Vec<u8>> {
        // The tracee's "self" is the calling thread's process: the notification's pid.
        let proc = if proc == b"self" || proc == b"thread-self" {
            self.pid.to_string()
        } else {
            String::from_utf8_lossy(proc).into_owned()
        };
        link(&format!("/proc/{proc}/{}", String::from_utf8_lossy(name)))
    }
}

fn link(p: &str) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    Ok(std::fs::read_link(p)?.into_os_string().into_vec())
}

fn pid_t(pid: u32) -> libc::pid_t {
    libc::pid_t::try_from(pid).unwrap_or(libc::pid_t::MAX)
}
