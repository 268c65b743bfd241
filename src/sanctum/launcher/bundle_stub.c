/*
 * The start stub of the self-contained Sanctum launcher (ADR 0103). Built by
 * `python -m sanctum.launcher.build` with `gcc -static`; not a Python extension.
 *
 * The launcher file is this static program followed by a ZIP archive that holds the launcher's
 * Python modules and, stored uncompressed before the archive's directory, the ELF files it needs:
 * the dynamic loader, the Python interpreter and every shared library (glibc included), each
 * rewritten at build time so that its DT_NEEDED entries name /proc/self/fd/N paths. The ZIP
 * comment carries the index of those files:
 *
 *     SANCTUM-BOOT-BEGIN\n
 *     B <fd> <offset> <size> <name>\n     (loaded here, before Python starts)
 *     ...
 *     SANCTUM-BOOT-END\n
 *
 * Nothing is unpacked to a file system: each boot file is copied from this file into an
 * anonymous memory file (memfd_create) placed at its fixed descriptor number, the launcher file
 * itself stays open as descriptor 99 (Python imports its modules from the ZIP through
 * /proc/self/fd/99), and the dynamic loader is executed from its memory file with the
 * interpreter as its program. The process keeps its PID through both execs. Variables named
 * PYTHON* are kept under SANCTUM_KEPT_PYTHON* so that the launcher can restore them (they belong
 * to the app); PYTHONHOME and PYTHONPATH point at the archive.
 *
 * Built with -DSANCTUM_DIRECTORY (and SANCTUM_INSTALL_DIR, SANCTUM_LOADER, SANCTUM_PYTHON), the
 * same file is the entry program of the launcher DIRECTORY (ADR 0135), for Gramine: nothing is
 * copied or written, no memory file is made. The stub finds its directory (/proc/self/exe, or
 * an absolute argv[0] without /proc) and executes the interpreter of that directory in isolated
 * mode (-I -S -B; its ._pth file fixes sys.path to the directory's archive, so no PYTHON*
 * variable is read and none needs to be put aside). Installed at SANCTUM_INSTALL_DIR, the
 * interpreter is executed directly (its PT_INTERP names the directory's loader); anywhere else
 * (tests, a copy), the directory's loader is executed with the interpreter as its program.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#define SELF_FD 99
#define LOADER_FD 100
#define PYTHON_FD 101
#define TAIL_MAX (65536 + 22)
#define BEGIN_MARK "SANCTUM-BOOT-BEGIN\n"
#define END_MARK "SANCTUM-BOOT-END\n"

static void die(const char *what) {
    int saved = errno;
    fprintf(stderr, "sanctum-launcher: cannot start: %s%s%s\n", what, saved ? ": " : "",
            saved ? strerror(saved) : "");
    exit(1);
}

#ifndef SANCTUM_DIRECTORY
static void copy_range(int from, int to, off_t offset, size_t size) {
    size_t done = 0;
    while (done < size) {
        /* In-kernel copy from the page cache into the memory file (no user buffer). */
        off_t in = offset + (off_t)done;
        ssize_t n = sendfile(to, from, &in, size - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0) {
            errno = 0;
            die("the launcher file is truncated");
        }
        if (errno == EINTR)
            continue;
        if (errno != EINVAL && errno != ENOSYS)
            die("sendfile");
        /* Fall back to reading and writing through a buffer. */
        static char buffer[1 << 16];
        while (done < size) {
            size_t want = size - done < sizeof buffer ? size - done : sizeof buffer;
            ssize_t got = pread(from, buffer, want, offset + (off_t)done);
            if (got <= 0)
                die("reading the launcher file");
            for (ssize_t put = 0; put < got;) {
                ssize_t w = write(to, buffer + put, (size_t)(got - put));
                if (w <= 0)
                    die("writing a memory file");
                put += w;
            }
            done += (size_t)got;
        }
    }
}

static void load(int self, int fd, off_t offset, size_t size, const char *name) {
    int memory = memfd_create(name, 0);
    if (memory < 0)
        die("memfd_create");
    copy_range(self, memory, offset, size);
    if (memory != fd) {
        if (dup2(memory, fd) < 0)
            die("dup2");
        close(memory);
    }
}

int main(int argc, char **argv, char **envp) {
    int self = open("/proc/self/exe", O_RDONLY);
    if (self < 0)
        die("/proc/self/exe cannot be opened (is /proc mounted?)");
    struct stat st;
    if (fstat(self, &st) < 0)
        die("fstat");
    off_t tail_size = st.st_size < TAIL_MAX ? st.st_size : TAIL_MAX;
    char *tail = malloc((size_t)tail_size + 1);
    if (tail == NULL)
        die("malloc");
    if (pread(self, tail, (size_t)tail_size, st.st_size - tail_size) != tail_size)
        die("reading the launcher's index");
    tail[tail_size] = '\0';
    char *begin = memmem(tail, (size_t)tail_size, BEGIN_MARK, strlen(BEGIN_MARK));
    char *end = begin ? strstr(begin, END_MARK) : NULL;
    if (begin == NULL || end == NULL) {
        errno = 0;
        die("the launcher file has no boot index (truncated or not built by make launcher)");
    }
    *end = '\0';
    for (char *line = begin + strlen(BEGIN_MARK); *line;) {
        char *next = strchr(line, '\n');
        if (next == NULL)
            break;
        *next = '\0';
        int fd;
        long long offset, size;
        char name[64];
        if (sscanf(line, "B %d %lld %lld %63s", &fd, &offset, &size, name) == 4) {
            if (fd <= SELF_FD || offset < 0 || size < 0 || offset + size > st.st_size) {
                errno = 0;
                die("the launcher's boot index is corrupt");
            }
            load(self, fd, (off_t)offset, (size_t)size, name);
        }
        line = next + 1;
    }
    if (self != SELF_FD) {
        if (dup2(self, SELF_FD) < 0)
            die("dup2");
        close(self);
    }

    size_t count = 0;
    while (envp[count])
        count++;
    char **env = calloc(count + 3, sizeof *env);
    if (env == NULL)
        die("calloc");
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        if (strncmp(envp[i], "PYTHON", 6) == 0) {
            char *kept = malloc(strlen(envp[i]) + sizeof "SANCTUM_KEPT_");
            if (kept == NULL)
                die("malloc");
            strcpy(kept, "SANCTUM_KEPT_");
            strcat(kept, envp[i]);
            env[used++] = kept;
        } else {
            env[used++] = envp[i];
        }
    }
    env[used++] = "PYTHONHOME=/proc/self/fd/99";
    env[used++] = "PYTHONPATH=/proc/self/fd/99";
    env[used] = NULL;

    char **args = calloc((size_t)argc + 12, sizeof *args);
    if (args == NULL)
        die("calloc");
    size_t n = 0;
    args[n++] = argv[0];
    args[n++] = "--argv0";
    args[n++] = argv[0];
    args[n++] = "/proc/self/fd/101";
    args[n++] = "-P"; /* No script or working directory in sys.path. */
    args[n++] = "-S"; /* No site module: nothing from the image is imported. */
    args[n++] = "-s";
    args[n++] = "-B";
    args[n++] = "-c";
    args[n++] = "import _sanctum_boot";
    for (int i = 1; i < argc; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    execve("/proc/self/fd/100", args, env);
    die("executing the bundled dynamic loader");
    return 1;
}
#else /* SANCTUM_DIRECTORY */
#include <limits.h>

static char *joined(const char *directory, const char *relative) {
    size_t size = strlen(directory) + strlen(relative) + 2;
    char *out = malloc(size);
    if (out == NULL)
        die("malloc");
    snprintf(out, size, "%s/%s", directory, relative);
    return out;
}

int main(int argc, char **argv, char **envp) {
    static const char *const flags[] = {"-I", "-S", "-B", "-c", "import _sanctum_boot"};
    const size_t nflags = sizeof flags / sizeof flags[0];
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    if (length > 0 && (size_t)length < sizeof self - 1) {
        self[length] = '\0';
    } else if (argc > 0 && argv[0][0] == '/' && strlen(argv[0]) < sizeof self) {
        strcpy(self, argv[0]);
    } else {
        die("cannot find the launcher directory (/proc/self/exe unreadable, argv[0] relative)");
    }
    char *slash = strrchr(self, '/');
    *slash = '\0';
    const char *directory = self[0] ? self : "/";
    char *python = joined(self, SANCTUM_PYTHON);
    char **args = calloc((size_t)argc + nflags + 8, sizeof *args);
    if (args == NULL)
        die("calloc");
    size_t n = 0;
    const char *program = python;
    if (strcmp(directory, SANCTUM_INSTALL_DIR) != 0) {
        /* Not at the path compiled into the interpreter's PT_INTERP: run the loader itself. */
        program = joined(self, "lib/" SANCTUM_LOADER);
        args[n++] = (char *)program;
        args[n++] = "--inhibit-cache";
        args[n++] = "--library-path";
        args[n++] = joined(self, "lib");
    }
    args[n++] = python; /* Absolute: Python finds its ._pth file beside it. */
    for (size_t i = 0; i < nflags; i++)
        args[n++] = (char *)flags[i];
    for (int i = 1; i < argc; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    execve(program, args, envp);
    die(program);
    return 1;
}
#endif /* SANCTUM_DIRECTORY */
