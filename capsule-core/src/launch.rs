//! The program's side of a launch: what its process does between the fork and the exec. One
//! routine, [`child`], on both launch paths: the full launcher (`capsule-cli run`) registers it
//! as the last `pre_exec` step (`run::launch`), after the namespaces are entered; the no-libc
//! front end, starting a run from its plan, calls it in its forked child. Each passes its own
//! way of making a system call ([`Sys`]), and nothing here allocates or takes a lock (it runs
//! between fork and exec).
//!
//! The order is the point:
//! 1. **The signal mask** the program starts with, when the launcher changed its own around
//!    the fork (the front end holds the forwarded signals until `run-attached` catches them).
//! 2. **The user** (`run --user`, root only): groups, group and user, after what needs root
//!    (the namespaces) and before confinement and the filter, which it then enters without
//!    privileges (`no_new_privs`, as a non-root run does).
//! 3. **Die with the launcher** (`PR_SET_PDEATHSIG(SIGKILL)`, after the change of user, which
//!    clears it), and at once if it already died since the fork (the parent is then no longer
//!    the launcher).
//! 4. **Confinement** (`confine::restrict`): after the rest, so that nothing the steps before it
//!    need is refused; the kernel then enforces the run's isolation on everything the program
//!    does.
//!
//! What the child does not do here: namespaces are entered by their own `pre_exec` steps
//! before this one; the seccomp filter (tier 2's, or the guard) is armed by the shim after the
//! loader, or for a program without the shim by `supervisor::launch`'s step after this one.

pub use crate::confine::Sys;

/// The credentials a program starts with (`run --user`).
#[derive(Clone, Copy, Debug)]
pub struct Creds<'a> {
    /// The user id (real, effective and saved).
    pub uid: u32,
    /// The group id (real, effective and saved).
    pub gid: u32,
    /// The supplementary groups.
    pub groups: &'a [u32],
}

/// What the child does before exec.
#[derive(Clone, Copy, Debug)]
pub struct Child<'a> {
    /// The launcher's pid.
    pub launcher: usize,
    /// The signal mask to start the program with (kernel bits of signals 1..=64), when the
    /// launcher's differs.
    pub mask: Option<u64>,
    /// The user to start the program as.
    pub creds: Option<Creds<'a>>,
    /// The Landlock ruleset (a descriptor) to restrict the program to.
    pub ruleset: Option<usize>,
}

const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_GETPID: usize = 39;
const SYS_KILL: usize = 62;
const SYS_GETPPID: usize = 110;
const SYS_PRCTL: usize = 157;
const SYS_SETRESUID: usize = 117;
const SYS_SETRESGID: usize = 119;
const SYS_SETGROUPS: usize = 116;
const PR_SET_PDEATHSIG: usize = 1;
const SIG_SETMASK: usize = 2;
const SIGKILL: usize = 9;

/// Run the steps of `c` in the forked child. `Err(-errno)` when the program must not start
/// (the user could not be taken, or confinement entered): the caller reports it and exits.
pub fn child(sys: Sys, c: &Child<'_>) -> Result<(), isize> {
    if let Some(mask) = c.mask {
        sys(SYS_RT_SIGPROCMASK, [SIG_SETMASK, (&raw const mask) as usize, 0, 8, 0, 0]);
    }
    if let Some(u) = c.creds {
        let ok = |r: isize| if r < 0 { Err(r) } else { Ok(()) };
        ok(sys(SYS_SETGROUPS, [u.groups.len(), u.groups.as_ptr() as usize, 0, 0, 0, 0]))?;
        ok(sys(SYS_SETRESGID, [u.gid as usize, u.gid as usize, u.gid as usize, 0, 0, 0]))?;
        ok(sys(SYS_SETRESUID, [u.uid as usize, u.uid as usize, u.uid as usize, 0, 0, 0]))?;
    }
    sys(SYS_PRCTL, [PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0]);
    if sys(SYS_GETPPID, [0; 6]).cast_unsigned() != c.launcher {
        let me = sys(SYS_GETPID, [0; 6]).cast_unsigned();
        sys(SYS_KILL, [me, SIGKILL, 0, 0, 0, 0]);
    }
    if let Some(rs) = c.ruleset {
        crate::confine::restrict(sys, rs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calls, in order, with what each was given (a fake kernel).
    fn traced(c: &Child, ppid: usize, restrict: isize) -> (Result<(), isize>, Vec<(usize, usize)>) {
        use std::cell::RefCell;
        thread_local! {
            static CALLS: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
            static ANSWERS: RefCell<(usize, isize)> = const { RefCell::new((0, 0)) };
        }
        fn fake(nr: usize, a: [usize; 6]) -> isize {
            CALLS.with(|c| c.borrow_mut().push((nr, a[0])));
            let (ppid, restrict) = ANSWERS.with(|a| *a.borrow());
            match nr {
                SYS_GETPPID => ppid.cast_signed(),
                SYS_GETPID => 4242,
                446 => restrict,
                _ => 0,
            }
        }
        CALLS.with(|c| c.borrow_mut().clear());
        ANSWERS.with(|a| *a.borrow_mut() = (ppid, restrict));
        let r = child(fake, c);
        (r, CALLS.with(|c| c.borrow().clone()))
    }

    #[test]
    fn mask_then_user_then_death_signal_then_confinement() {
        let groups = [5, 6];
        let creds = Creds { uid: 7432, gid: 7433, groups: &groups };
        let c = Child { launcher: 100, mask: Some(0), creds: Some(creds), ruleset: Some(7) };
        let (r, calls) = traced(&c, 100, 0);
        assert_eq!(r, Ok(()));
        let nrs: Vec<usize> = calls.iter().map(|c| c.0).collect();
        assert_eq!(
            nrs,
            [SYS_RT_SIGPROCMASK, SYS_SETGROUPS, SYS_SETRESGID, SYS_SETRESUID, SYS_PRCTL, SYS_GETPPID, 446],
            "the death signal after the change of user (which clears it), confinement last"
        );
        assert_eq!((calls[1].1, calls[2].1, calls[3].1), (2, 7433, 7432));
        assert_eq!(calls[6].1, 7, "restricts to the ruleset given");
    }

    #[test]
    fn kills_itself_when_the_launcher_is_already_gone() {
        let c = Child { launcher: 100, mask: None, creds: None, ruleset: None };
        let (_, calls) = traced(&c, 1, 0);
        assert!(calls.contains(&(SYS_KILL, 4242)), "{calls:?}");
    }

    #[test]
    fn a_refused_restriction_stops_the_start() {
        let c = Child { launcher: 100, mask: None, creds: None, ruleset: Some(7) };
        // EINVAL from landlock_restrict_self (not EPERM: no retry with no_new_privs).
        let (r, _) = traced(&c, 100, -22);
        assert_eq!(r, Err(-22));
    }
}
