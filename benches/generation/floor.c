/* The system calls a generator run cannot avoid, timed alone (no parsing,
 * no database, one thread): list the unit directories and their .d
 * directories, open/read/close every unit file and drop-in in them, then
 * write a given set of drop-ins (the generator's own output of a run) into
 * a fresh directory, each through a temporary file renamed into place.
 *
 *   floor ROOT REFERENCE_OUT NEW_OUT
 *
 * Prints the time of each part in ms. Built and run by bench.py --floor.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *unit_dirs[] = {
    "etc/systemd/system.control", "run/systemd/system.control",
    "run/systemd/transient",      "run/systemd/generator.early",
    "etc/systemd/system",         "etc/systemd/system.attached",
    "run/systemd/system",         "run/systemd/system.attached",
    "run/systemd/generator",      "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",     "run/systemd/generator.late",
};

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static char buffer[1 << 16];
static long files_read, dirs_listed, bytes_read;

static void read_file(int dir, const char *name) {
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return;
    ssize_t n;
    while ((n = read(fd, buffer, sizeof buffer)) > 0)
        bytes_read += n;
    close(fd);
    files_read++;
}

/* Reads every regular file in the directory; with `nested`, also those in
 * its *.d subdirectories. */
static void read_dir(const char *path, int nested) {
    DIR *d = opendir(path);
    if (!d)
        return;
    dirs_listed++;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = strlen(e->d_name);
        if (e->d_type == DT_REG) {
            read_file(dirfd(d), e->d_name);
        } else if (nested && e->d_type == DT_DIR && len > 2 &&
                   strcmp(e->d_name + len - 2, ".d") == 0) {
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            read_dir(sub, 0);
        }
    }
    closedir(d);
}

struct dropin {
    char unit_dir[512];
    char name[256];
    char *text;
    size_t size;
};

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: floor ROOT REFERENCE_OUT NEW_OUT\n");
        return 2;
    }
    /* Load the drop-ins to write (not timed). */
    struct dropin *dropins = NULL;
    size_t count = 0;
    DIR *out = opendir(argv[2]);
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(out))) {
        size_t len = strlen(e->d_name);
        if (len < 3 || strcmp(e->d_name + len - 2, ".d") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[2], e->d_name);
        DIR *unit = opendir(path);
        struct dirent *f;
        while (unit && (f = readdir(unit))) {
            if (f->d_name[0] == '.')
                continue;
            dropins = realloc(dropins, (count + 1) * sizeof *dropins);
            struct dropin *dr = &dropins[count++];
            snprintf(dr->unit_dir, sizeof dr->unit_dir, "%s", e->d_name);
            snprintf(dr->name, sizeof dr->name, "%s", f->d_name);
            char file[8192];
            snprintf(file, sizeof file, "%s/%s", path, f->d_name);
            FILE *in = fopen(file, "r");
            fseek(in, 0, SEEK_END);
            dr->size = ftell(in);
            rewind(in);
            dr->text = malloc(dr->size);
            if (fread(dr->text, 1, dr->size, in) != dr->size)
                return 1;
            fclose(in);
        }
        if (unit)
            closedir(unit);
    }
    closedir(out);

    double t0 = now_ms();
    for (size_t i = 0; i < sizeof unit_dirs / sizeof *unit_dirs; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], unit_dirs[i]);
        read_dir(path, 1);
    }
    double t1 = now_ms();

    int new_out = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (new_out < 0) {
        perror(argv[3]);
        return 1;
    }
    size_t bytes_written = 0;
    for (size_t i = 0; i < count; i++) {
        struct dropin *dr = &dropins[i];
        mkdirat(new_out, dr->unit_dir, 0755);
        int dir = openat(new_out, dr->unit_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char temporary[300];
        snprintf(temporary, sizeof temporary, ".%s.tmp", dr->name);
        int fd = openat(dir, temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (write(fd, dr->text, dr->size) != (ssize_t)dr->size)
            return 1;
        close(fd);
        renameat(dir, temporary, dir, dr->name);
        close(dir);
        bytes_written += dr->size;
    }
    double t2 = now_ms();
    printf("read %ld files in %ld directories (%ld bytes): %.1f ms\n", files_read, dirs_listed,
           bytes_read, t1 - t0);
    printf("wrote %zu drop-ins (%zu bytes): %.1f ms\n", count, bytes_written, t2 - t1);
    return 0;
}
