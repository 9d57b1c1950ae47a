/* C-variadic functions that stable Rust cannot define: the execl family and syscall, exported
 * from Rust as `execl`, `execlp`, `execle`, `syscall` (naked tail jumps in
 * preload/hooks/exec.rs and preload/hooks/syscall.rs, so rustc's export list includes them and
 * every argument register, %al included, arrives untouched). Each exec body collects its
 * NULL-terminated argument list into an array on the stack (bounded: more than ARG_MAX_COUNT
 * arguments fail with E2BIG, as no real command line gets near it) and calls the Rust hook
 * through the exported non-variadic function, so there is one exec path. No allocation. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#define ARG_MAX_COUNT 4096

extern char **environ;
int execve(const char *path, char *const argv[], char *const envp[]);
int execvpe(const char *file, char *const argv[], char *const envp[]);

/* Collect arguments after `first` up to the NULL; returns the count or -1. */
#define COLLECT(first, ap, argv)                                  \
    do {                                                          \
        size_t n_ = 0;                                            \
        argv[n_++] = (char *)(first);                             \
        while (argv[n_ - 1] != NULL) {                            \
            if (n_ >= ARG_MAX_COUNT) { errno = E2BIG; return -1; } \
            argv[n_++] = va_arg(ap, char *);                      \
        }                                                         \
    } while (0)

int capsule_execl(const char *path, const char *arg, ...) {
    char *argv[ARG_MAX_COUNT];
    va_list ap;
    va_start(ap, arg);
    COLLECT(arg, ap, argv);
    va_end(ap);
    return execve(path, argv, environ);
}

int capsule_execlp(const char *file, const char *arg, ...) {
    char *argv[ARG_MAX_COUNT];
    va_list ap;
    va_start(ap, arg);
    COLLECT(arg, ap, argv);
    va_end(ap);
    return execvpe(file, argv, environ);
}

int capsule_execle(const char *path, const char *arg, ...) {
    char *argv[ARG_MAX_COUNT];
    va_list ap;
    va_start(ap, arg);
    COLLECT(arg, ap, argv);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return execve(path, argv, envp);
}


/* syscall(2): the number and six arguments (what glibc's own passes to the kernel; reading
 * more than the caller passed is what glibc's does too: registers and the caller's stack
 * slot), to the Rust body, which routes path calls and hands everything else to glibc. */
long capsule_syscall_routed(long nr, long a, long b, long c, long d, long e, long f);

long capsule_syscall(long nr, ...) {
    va_list ap;
    va_start(ap, nr);
    long a = va_arg(ap, long);
    long b = va_arg(ap, long);
    long c = va_arg(ap, long);
    long d = va_arg(ap, long);
    long e = va_arg(ap, long);
    long f = va_arg(ap, long);
    va_end(ap);
    return capsule_syscall_routed(nr, a, b, c, d, e, f);
}
